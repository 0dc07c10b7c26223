//! systemd's readiness protocol (`sd_notify`): `READY=1` once the mount is live, `STOPPING=1` when it goes.
//!
//! A `Type=notify` unit waits for `READY=1` on the datagram socket named by `NOTIFY_SOCKET`, so `systemctl start`
//! returns only once the mount can be used, as `vm0fs mount` does in the background. The protocol is one datagram
//! per message, so a few lines of `UnixDatagram` do it and no crate is needed; a name starting with `@` is an
//! abstract socket. Failing to notify is logged and otherwise ignored: the mount itself is fine.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `message` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; does nothing when it is not set.
pub fn notify(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), message) {
        tracing::warn!("cannot tell systemd {message} through NOTIFY_SOCKET={socket:?}: {e}");
    }
}

fn send(socket: &str, message: &str) -> std::io::Result<()> {
    let address = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::send;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("vm0fs-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&address).unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
