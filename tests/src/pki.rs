//! Test certificates, minted with the `openssl` CLI into a fresh temporary directory: a test CA,
//! a server certificate it signs for `api.test`, one it signs for `other.test` (the wrong name),
//! and a self-signed `api.test` certificate.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const NAME: &str = "api.test";
pub const OTHER_NAME: &str = "other.test";

pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate and its key.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn create() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "egress-monitor-pki-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=egress-monitor test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        for (stem, name) in [("api", NAME), ("other", OTHER_NAME)] {
            openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{stem}.key"),
                    "-out",
                    &format!("{stem}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
            std::fs::write(
                dir.join(format!("{stem}.ext")),
                format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
            )
            .unwrap();
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{stem}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &format!("{stem}.pem"),
                    "-extfile",
                    &format!("{stem}.ext"),
                ],
            );
        }
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-subj",
                &format!("/CN={NAME}"),
                "-addext",
                &format!("subjectAltName=DNS:{NAME}"),
            ],
        );
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn pair(&self, stem: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// `api.test`, signed by the test CA.
    pub fn server(&self) -> Pair {
        self.pair("api")
    }

    /// `other.test`, signed by the test CA (a valid certificate for the wrong name).
    pub fn wrong_name(&self) -> Pair {
        self.pair("other")
    }

    /// `api.test`, self-signed.
    pub fn self_signed(&self) -> Pair {
        self.pair("self")
    }

    /// A `--config` file that makes the monitor trust the test CA.
    pub fn config(&self) -> PathBuf {
        let path = self.dir.join("egress-monitor.toml");
        std::fs::write(&path, format!("[tls]\nca_files = [{:?}]\n", self.ca())).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
