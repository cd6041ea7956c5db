//! Names for the errors `connect(2)` returns, as the JSON contract spells them.

/// "ok", "in_progress", or the errno name of a negative syscall return.
pub fn connect_result(ret: i32) -> &'static str {
    match -ret {
        0 => "ok",
        115 => "in_progress",
        e => name(e),
    }
}

pub fn name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        9 => "EBADF",
        11 => "EAGAIN",
        13 => "EACCES",
        14 => "EFAULT",
        22 => "EINVAL",
        24 => "EMFILE",
        88 => "ENOTSOCK",
        91 => "EPROTOTYPE",
        93 => "EPROTONOSUPPORT",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        105 => "ENOBUFS",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => "EUNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results() {
        assert_eq!(connect_result(0), "ok");
        assert_eq!(connect_result(-115), "in_progress");
        assert_eq!(connect_result(-111), "ECONNREFUSED");
        assert_eq!(connect_result(-101), "ENETUNREACH");
        assert_eq!(connect_result(-4242), "EUNKNOWN");
    }
}
