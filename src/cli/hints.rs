//! Set-up mistakes that the kernel or the network would report only obscurely, caught or explained up front.
//!
//! `--allow-other` as a user other than root is refused by `fusermount3` unless `/etc/fuse.conf` says
//! `user_allow_other`, with a message that comes after the fork and names neither the file nor the fix, so vm0fs
//! checks the file first. A proxy set in the environment (reqwest follows `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`
//! and `NO_PROXY`, either case) is the usual reason an API that answers `curl` cannot be reached, so a connection
//! failure names the proxy in use, without any credentials in its URL.

use std::path::Path;

const FUSE_CONF: &str = "/etc/fuse.conf";

/// Refuses `--allow-other` early when `fusermount3` would refuse it.
pub(super) fn check_allow_other(allow_other: bool) -> Result<(), String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if !allow_other || unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let conf = std::fs::read_to_string(Path::new(FUSE_CONF)).unwrap_or_default();
    if allows_other(&conf) {
        return Ok(());
    }
    Err(format!(
        "--allow-other (allow_other) needs the line `user_allow_other` in {FUSE_CONF} when you are not root; \
         ask an administrator to add it (echo user_allow_other | sudo tee -a {FUSE_CONF}), or mount without it"
    ))
}

/// Whether a `fuse.conf` text enables `user_allow_other` (comments start with `#`).
fn allows_other(conf: &str) -> bool {
    conf.lines()
        .any(|line| line.split('#').next().unwrap_or("").trim() == "user_allow_other")
}

/// `; requests to it go through the proxy http://proxy:3128 (from HTTPS_PROXY) ...`, or nothing without a proxy.
pub(super) fn proxy_hint(api_url: &str) -> String {
    let scheme_var = if api_url.starts_with("https:") {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    let proxy = [scheme_var, "ALL_PROXY"].into_iter().find_map(|name| {
        [name.to_string(), name.to_ascii_lowercase()]
            .into_iter()
            .find_map(|var| {
                std::env::var(&var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (var, v))
            })
    });
    match proxy {
        Some((var, url)) => format!(
            "; requests go through the proxy {} (from {var}): check that it is up, or exclude the API's host with \
             NO_PROXY",
            without_credentials(&url)
        ),
        None => String::new(),
    }
}

/// A proxy URL with any `user:password@` removed.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_conf_must_say_user_allow_other_outside_a_comment() {
        assert!(allows_other("# comment\nuser_allow_other\n"));
        assert!(allows_other("  user_allow_other  # yes\n"));
        assert!(!allows_other("#user_allow_other\nmount_max = 1000\n"));
        assert!(!allows_other(""));
    }

    #[test]
    fn proxy_urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("http://bob:secret@proxy:3128"),
            "http://proxy:3128"
        );
        assert_eq!(
            without_credentials("http://proxy:3128/"),
            "http://proxy:3128/"
        );
        assert_eq!(without_credentials("proxy:3128"), "proxy:3128");
    }
}
