//! TCP MD5 signatures for BGP sessions (RFC 2385), set with the Linux
//! `TCP_MD5SIG` socket option: on the listening socket for each keyed peer, and
//! on an outgoing socket before it connects.
//!
//! FFI module: the only `unsafe` in this crate is the `setsockopt` call here.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::RawFd;

/// The longest key the kernel takes.
pub const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; MAX_KEY_LEN],
}

/// Sets (or with an empty key, removes) the MD5 key for `peer` on socket `fd`.
/// On an IPv6 socket an IPv4 peer is given as its IPv4-mapped address, which is
/// how a dual-stack socket sees it.
pub fn set_key(fd: RawFd, socket_is_v6: bool, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 keys have at most 80 bytes",
        ));
    }
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut sig = TcpMd5Sig {
        addr: unsafe { std::mem::zeroed() },
        flags: 0,
        prefix_len: 0,
        key_len: key.len() as u16,
        ifindex: 0,
        key: [0; MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    match (peer, socket_is_v6) {
        (IpAddr::V4(v4), false) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
            unsafe { std::ptr::write((&mut sig.addr as *mut libc::sockaddr_storage).cast(), sin) };
        }
        (ip, true) => {
            let v6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is aligned for it.
            unsafe { std::ptr::write((&mut sig.addr as *mut libc::sockaddr_storage).cast(), sin6) };
        }
        (IpAddr::V6(_), false) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv6 peer needs an IPv6 socket",
            ));
        }
    }
    // SAFETY: `sig` is a live, initialised tcp_md5sig and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("TCP MD5 key for {peer}: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpSocket};

    async fn try_connect(listener_key: &[u8], client_key: &[u8]) -> bool {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        set_key(
            l.as_raw_fd(),
            false,
            "127.0.0.1".parse().unwrap(),
            listener_key,
        )
        .unwrap();
        let s = TcpSocket::new_v4().unwrap();
        set_key(
            s.as_raw_fd(),
            false,
            "127.0.0.1".parse().unwrap(),
            client_key,
        )
        .unwrap();
        let accept = tokio::spawn(async move { l.accept().await.is_ok() });
        let connected = tokio::time::timeout(Duration::from_millis(1500), s.connect(addr)).await;
        let ok = matches!(connected, Ok(Ok(_)));
        accept.abort();
        ok
    }

    #[tokio::test]
    async fn matching_keys_connect_and_different_keys_do_not() {
        assert!(
            try_connect(b"nos-secret", b"nos-secret").await,
            "same key: connected"
        );
        assert!(
            !try_connect(b"nos-secret", b"wrong").await,
            "different keys: the SYN is dropped"
        );
    }

    #[test]
    fn rejects_long_keys_and_v6_peers_on_v4_sockets() {
        assert!(set_key(-1, false, "127.0.0.1".parse().unwrap(), &[0u8; 81]).is_err());
        assert!(set_key(-1, false, "::1".parse().unwrap(), b"k").is_err());
    }
}
