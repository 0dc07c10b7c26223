//! I/O errors in people's words, for every layer: the leaf that `cache`, `stage`, `fs` and `cli` all call.
//!
//! Rust prints an `io::Error` with a ` (os error N)` suffix that tells a user nothing; every message vm0fs shows
//! or logs goes through `io_message` instead. It lives in a module of its own, which imports nothing from the
//! crate, so that the lower layers (`cache`, `stage`) can use it without importing the filesystem core above them.

/// An io error as a sentence for people: the system's words without Rust's ` (os error N)` suffix.
pub fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_loses_its_number_and_another_keeps_its_words() {
        let os = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(io_message(&os), "No space left on device");
        let other = std::io::Error::other("the archive ended early (os error 5)");
        assert_eq!(
            io_message(&other),
            "the archive ended early (os error 5)",
            "only the system's own suffix goes"
        );
    }
}
