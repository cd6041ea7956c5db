//! `egress-monitor report` end to end: a real run (curl with `-k` against a self-signed
//! upstream, a bearer token over plain HTTP, a verified `--cacert` handshake, and a command line
//! full of markup) written by the monitor with `--output`, turned into HTML and Markdown, and the
//! HTML loaded in a real headless Chromium: it renders (a screenshot that is not one colour),
//! logs nothing to the console, requests nothing, and its DOM shows every finding of the run.
use std::{
    io::{BufRead as _, BufReader},
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use egress_monitor_tests::{
    monitor_bin, ok, pki::Pki, run_client, serial, Monitor, Options, Run, Upstream,
};

const HTTP: u16 = 8080;
const SELF_SIGNED: u16 = 8443;
const CA_SIGNED: u16 = 9443;

/// What a hostile program puts on its command line: markup that would load a resource and run
/// a script if the report did not escape it, a quote, and a right-to-left override.
const HOSTILE_AGENT: &str =
    "<img src=http://leak.test/ua.png><script>fetch('http://leak.test/js')</script>\"'\u{202e}gnp.exe";

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("em-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(monitor_bin())
        .arg("report")
        .args(args)
        .output()
        .expect("running egress-monitor report")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A proxy that answers nothing: every request Chromium makes goes here and is recorded.
struct Trap {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy trap");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                sink.lock().unwrap().push(line.trim_end().to_string());
            }
        });
        Self { port, requests }
    }

    /// Requests for anything but Chromium's own services (component updates, time, account
    /// checks, which headless Chromium makes whatever the flags): those would come from the
    /// page.
    fn page_requests(&self) -> Vec<String> {
        const CHROMIUM_SERVICES: &[&str] = &[
            "google.com",
            "googleapis.com",
            "gstatic.com",
            "gvt1.com",
            "googleusercontent.com",
        ];
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                let target = r.split_whitespace().nth(1).unwrap_or("");
                let host = target
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .split(['/', ':'])
                    .next()
                    .unwrap_or("");
                !CHROMIUM_SERVICES
                    .iter()
                    .any(|s| host == *s || host.ends_with(&format!(".{s}")))
            })
            .cloned()
            .collect()
    }
}

/// Headless Chromium on `page` with `extra` (`--screenshot=...` or `--dump-dom`), every request
/// sent to `trap`, console messages on stderr. Panics with the reason when it cannot run.
fn chromium(page: &Path, profile: &Path, trap: &Trap, extra: &str) -> Output {
    let child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--proxy-server=127.0.0.1:{}", trap.port))
        // Loopback goes through the proxy too (Chromium bypasses it for loopback by default),
        // and no name resolves except the proxy's address.
        .arg("--proxy-bypass-list=<-loopback>")
        .arg("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
        .arg(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium ({e}): install it with `cargo xtask setup` (Debian package chromium)")
        });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("waiting for chromium"),
        Err(_) => {
            // SAFETY: signalling the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("chromium {extra} did not finish within 120 s");
        }
    };
    assert!(
        out.status.success(),
        "chromium {extra} failed ({}): it must run here for this test (flags: --headless=new \
         --no-sandbox --disable-gpu --disable-dev-shm-usage):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Console messages Chromium logged (`--enable-logging=stderr`: `...:CONSOLE(N)] "..."`), such as
/// a script error or a Content-Security-Policy violation.
fn console_messages(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

/// The tags of an HTML text: (name, [(attribute, value)]). Escaped text has no `<`.
fn tags(page: &str) -> Vec<(String, Vec<(String, String)>)> {
    page.split('<')
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start_matches('/');
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == '-')
                .collect();
            let mut attrs = Vec::new();
            let mut s = rest[name.len()..].trim_start();
            if name.starts_with('!') {
                return (name, attrs);
            }
            while !s.starts_with('>') && !s.is_empty() {
                let end = s.find(['=', ' ', '>']).unwrap_or(s.len());
                let attr = s[..end].to_ascii_lowercase();
                s = &s[end..];
                let value = if let Some(v) = s.strip_prefix("=\"") {
                    let close = v.find('"').expect("closing quote");
                    s = &v[close + 1..];
                    v[..close].to_string()
                } else if let Some(v) = s.strip_prefix('=') {
                    let close = v.find([' ', '>']).unwrap_or(v.len());
                    s = &v[close..];
                    v[..close].to_string()
                } else {
                    String::new()
                };
                attrs.push((attr, value));
                s = s.trim_start();
            }
            (name.to_ascii_lowercase(), attrs)
        })
        .collect()
}

/// Nothing in the page can load or run anything: no script, image, frame, object, link or
/// form; no `src`/`srcset`/`action`/`on*` attribute; `href` only to a fragment; no CSS `url(`
/// or `@import`.
fn assert_self_contained(page: &str, what: &str) {
    for (name, attrs) in tags(page) {
        assert!(
            ![
                "script", "img", "iframe", "frame", "object", "embed", "link", "form", "video",
                "audio", "source", "base", "svg", "image", "use", "input",
            ]
            .contains(&name.as_str()),
            "{what}: a <{name}> element"
        );
        for (attr, value) in attrs {
            assert!(
                !(attr == "src"
                    || attr == "srcset"
                    || attr == "action"
                    || attr == "formaction"
                    || attr == "background"
                    || attr == "poster"
                    || attr.starts_with("on")),
                "{what}: attribute {attr}={value:?} on <{name}>"
            );
            if attr == "href" {
                assert!(
                    value.starts_with('#'),
                    "{what}: a link out of the page: {value}"
                );
            }
            if attr == "style" {
                assert!(!value.contains("url("), "{what}: url( in a style attribute");
            }
        }
    }
    let css: String = page
        .split("<style>")
        .skip(1)
        .map(|s| s.split("</style>").next().unwrap_or(""))
        .collect();
    assert!(
        !css.contains("url(") && !css.contains("@import"),
        "{what}: the CSS loads something"
    );
}

/// A screenshot that rendered: a PNG of the window's size, not one colour, with the page's dark
/// header band at the top (the inline CSS applied).
fn assert_rendered(png_path: &Path) {
    let file = std::fs::File::open(png_path).expect("chromium wrote no screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader
        .next_frame(&mut buf)
        .expect("decoding the screenshot");
    assert_eq!(
        (info.width, info.height),
        (1280, 2000),
        "the screenshot has the window's size"
    );
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| &p[..3])
        .collect();
    let mut colours: Vec<&[u8]> = pixels.clone();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        colours.len() > 16,
        "a blank screenshot: {} colour(s)",
        colours.len()
    );
    let background = pixels[pixels.len() - 1];
    let inked = pixels.iter().filter(|p| **p != background).count();
    assert!(
        inked * 100 > pixels.len(),
        "almost nothing drawn: {inked} of {} pixels",
        pixels.len()
    );
    let header = pixels[10 * info.width as usize + 10];
    assert!(
        header.iter().all(|c| *c < 0x40),
        "the dark header band is missing: {header:?} (inline CSS not applied?)"
    );
}

fn findings_of(run: &Run) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = run
        .lines
        .iter()
        .filter(|l| l["type"] == "finding")
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["process"]["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn spki(run: &Run, pid: u32) -> String {
    let hs = run.handshakes_of(pid);
    assert!(
        !hs.is_empty(),
        "no tls_handshake for pid {pid}:\n{}",
        run.dump()
    );
    hs[0]["tls"]["certificate"]["spki_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no SPKI pin in {}", hs[0]))
        .to_string()
}

#[test]
fn html_and_markdown_reports_of_a_real_run_render_safely_in_chromium() {
    let _s = serial();
    let dir = scratch("run");
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.tcp_server(HTTP);
    up.https_server(&pki.self_signed(), SELF_SIGNED);
    up.https_server(&pki.server(), CA_SIGNED);
    let jsonl = dir.join("run.jsonl");
    let config = pki.config();
    let monitor = Monitor::start_opts(
        &[
            "--config",
            config.to_str().unwrap(),
            "--output",
            jsonl.to_str().unwrap(),
            "--comm",
            "curl",
        ],
        Options {
            output: Some(jsonl.clone()),
            ..Options::default()
        },
    );
    let bearer = format!("report-bearer-{:08x}Zq", std::process::id());
    let curl = |url: &str, port: u16, extra: &[&str]| {
        run_client(
            Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "--max-time", "5", "--resolve"])
                .arg(format!("api.test:{port}:{}", up.v4))
                .args(["-A", HOSTILE_AGENT])
                .args(extra)
                .arg(url),
        )
    };
    let insecure = curl(
        &format!("https://api.test:{SELF_SIGNED}/"),
        SELF_SIGNED,
        &["-k"],
    );
    ok(&insecure, "curl -k");
    let auth = format!("Authorization: Bearer {bearer}");
    let plaintext = curl(
        &format!("http://api.test:{HTTP}/v1/tools"),
        HTTP,
        &["-H", &auth],
    );
    ok(&plaintext, "curl with a bearer over http");
    let ca = pki.ca();
    let verified = curl(
        &format!("https://api.test:{CA_SIGNED}/"),
        CA_SIGNED,
        &["--cacert", ca.to_str().unwrap()],
    );
    ok(&verified, "curl --cacert");
    let run = monitor.stop();

    // The run saw what the report is about.
    let found = findings_of(&run);
    let has = |id: &str, pid: u32| found.contains(&(id.to_string(), pid as u64));
    assert!(
        has("TLS_VERIFY_DISABLED", insecure.pid) || has("TLS_INVALID_CERT_ACCEPTED", insecure.pid),
        "no TLS finding for curl -k: {found:?}\n{}",
        run.dump()
    );
    assert!(
        has("PLAINTEXT_CREDENTIALS", plaintext.pid),
        "{found:?}\n{}",
        run.dump()
    );
    assert!(
        run.findings_of(verified.pid).is_empty(),
        "curl --cacert is clean:\n{}",
        run.dump()
    );
    let clean_pin = spki(&run, verified.pid);
    let self_signed_pin = spki(&run, insecure.pid);
    assert_ne!(clean_pin, self_signed_pin);

    // The reports, 0600.
    let html = dir.join("report.html");
    let md = dir.join("report.md");
    let out = report(&[jsonl.as_os_str(), "-o".as_ref(), html.as_os_str()]);
    assert!(
        out.status.success(),
        "report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = report(&[
        jsonl.as_os_str(),
        "--format".as_ref(),
        "markdown".as_ref(),
        "-o".as_ref(),
        md.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "report --format markdown: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&html), 0o600, "the HTML report is its owner's only");
    assert_eq!(mode(&md), 0o600, "the Markdown report is its owner's only");
    let page = std::fs::read_to_string(&html).unwrap();
    let markdown = std::fs::read_to_string(&md).unwrap();
    for (text, what) in [(&page, "HTML"), (&markdown, "Markdown")] {
        assert!(
            !text.contains(&bearer),
            "the bearer token leaked into the {what} report"
        );
        assert!(
            !text.contains('\u{202e}'),
            "a bidi override reached the {what} report"
        );
    }
    assert_self_contained(&page, "the report");
    assert!(
        page.contains("&lt;img src=http://leak.test/ua.png&gt;&lt;script&gt;"),
        "the hostile command line is shown, escaped"
    );

    // The pins: the verified upstream's key, and not the self-signed one.
    for text in [&page, &markdown] {
        assert!(text.contains("[[pins]]"), "no [[pins]] block");
        assert!(
            text.contains(&format!("  &quot;{clean_pin}&quot;,"))
                || text.contains(&format!("  \"{clean_pin}\",")),
            "the verified key {clean_pin} is not suggested"
        );
        assert!(
            !text.contains(&format!("  &quot;{self_signed_pin}&quot;,"))
                && !text.contains(&format!("  \"{self_signed_pin}\",")),
            "the self-signed key is suggested as a pin"
        );
    }

    // Every finding, in Markdown.
    for (id, pid) in &found {
        assert!(
            markdown.contains(&format!("`{id}`")),
            "{id} missing from the Markdown report"
        );
        assert!(
            markdown.contains(&format!("curl\\[{pid}\\]")),
            "pid {pid} missing from the Markdown report"
        );
    }
    for section in [
        "## Summary",
        "## Findings",
        "## Processes",
        "## Upstreams",
        "## Suggested pins",
        "## Run",
    ] {
        assert!(markdown.contains(section), "{section} missing");
    }

    // A real browser.
    let trap = Trap::start();
    let profile = dir.join("chromium-profile");
    let shot = dir.join("report.png");
    let screenshot = chromium(
        &html,
        &profile,
        &trap,
        &format!("--screenshot={}", shot.display()),
    );
    assert_rendered(&shot);
    let dom = chromium(&html, &profile, &trap, "--dump-dom");
    for (what, out) in [("screenshot", &screenshot), ("dump-dom", &dom)] {
        let console = console_messages(&out.stderr);
        assert!(
            console.is_empty(),
            "chromium {what}: console messages (script errors, blocked loads):\n{}",
            console.join("\n")
        );
    }
    let requests = trap.page_requests();
    assert!(requests.is_empty(), "the page made requests: {requests:?}");
    assert!(
        !trap
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("leak.test")),
        "the hostile markup ran"
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains("<section id=\"findings\">"),
        "no rendered DOM:\n{dom}"
    );
    assert_self_contained(&dom, "the rendered DOM");
    for (id, pid) in &found {
        let article = format!("data-finding=\"{id}\" data-pid=\"{pid}\"");
        assert!(
            dom.contains(&article),
            "{id} of pid {pid} is not in the DOM"
        );
    }
    for pid in [insecure.pid, plaintext.pid, verified.pid] {
        assert!(
            dom.contains(&format!("id=\"process-{pid}\"")),
            "pid {pid} has no timeline"
        );
    }
    assert!(
        dom.contains("&lt;img src=http://leak.test/ua.png&gt;"),
        "the hostile command line is text in the DOM"
    );
    eprintln!(
        "report: {} finding(s), HTML {} bytes, Markdown {} bytes, screenshot {}",
        found.len(),
        page.len(),
        markdown.len(),
        shot.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_line_is_an_error_naming_it() {
    let dir = scratch("malformed");
    let jsonl = dir.join("bad.jsonl");
    let good = r#"{"schema":"egress-monitor/1","type":"status","time":"2026-11-26T10:00:00Z","status":"ready","message":"ok"}"#;
    std::fs::write(
        &jsonl,
        format!("{good}\n{good}\n{{\"schema\":\"egress-monitor/1\",\"type\":\"event\"\n"),
    )
    .unwrap();
    let out_path = dir.join("report.html");
    let out = report(&[jsonl.as_os_str(), "-o".as_ref(), out_path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.jsonl: line 3: not JSON"), "{stderr}");
    assert!(!out_path.exists(), "no report from part of a file");
    let out = report(&[dir.join("missing.jsonl").as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}
