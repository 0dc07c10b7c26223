//! The `mount(8)` form: `vm0fs SOURCE MOUNTPOINT [-o OPTIONS]`, rewritten into `vm0fs mount` flags.
//!
//! `mount -t fuse.vm0fs SOURCE DIR -o OPTS` (and an fstab line of type `fuse.vm0fs`) makes `mount(8)` run
//! `/sbin/mount.fuse`, which runs `vm0fs SOURCE DIR -o OPTS` through `/bin/sh`. Rather than a second parser, the
//! options are turned into the flags of `vm0fs mount` (`cache_size=1G` into `--cache-size=1G`, `ro` into
//! `--read-only`) and clap parses them as usual, so defaults, validation, the config file and the environment work
//! the same in both forms. Generic mount options that `mount(8)` and `mount.fuse` pass along (`rw`, `nodev`,
//! `noatime`, `dev`, `suid`, ...) are accepted and ignored: vm0fs always mounts `nodev,nosuid,noatime`. `noexec`
//! (which a `user` line implies) is kept: programs in the mount cannot be run. Any other
//! option is a usage error naming it, since a misspelt option silently ignored would mount with the wrong settings.

use std::ffi::{OsStr, OsString};

/// Options that take a value, by the name of the `vm0fs mount` flag they become.
const VALUE_OPTIONS: &[&str] = &[
    "api_url",
    "token_file",
    "cache_dir",
    "cache_size",
    "max_archive_size",
    "max_archive_entries",
    "metadata_ttl",
    "commit_delay",
    "max_staged_size",
    "config",
];

/// Generic options of `mount(8)` and `mount.fuse` that mean nothing to vm0fs (`x-*` and `comment=` too).
const IGNORED: &[&str] = &[
    "defaults",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "async",
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
];

/// `Some(argv of vm0fs mount)` when `argv` is the mount(8) form, `None` when it is an ordinary command line.
pub fn rewrite(argv: &[OsString], cli: &clap::Command) -> Result<Option<Vec<OsString>>, String> {
    let (Some(program), Some(source), Some(mountpoint)) = (argv.first(), argv.get(1), argv.get(2))
    else {
        return Ok(None);
    };
    if source.to_string_lossy().starts_with('-') || is_subcommand(cli, source) {
        return Ok(None);
    }
    let options = option_list(&argv[3..])?;
    let mut out = vec![program.clone(), "mount".into(), mountpoint.clone()];
    let source = source.to_string_lossy();
    let url_given = options.iter().any(|o| o.starts_with("api_url="));
    if (source.starts_with("http://") || source.starts_with("https://")) && !url_given {
        out.push(format!("--api-url={source}").into());
    }
    for option in &options {
        if let Some(flag) = flag_for(option)? {
            out.push(flag.into());
        }
    }
    Ok(Some(out))
}

fn is_subcommand(cli: &clap::Command, word: &OsStr) -> bool {
    let word = word.to_string_lossy();
    word == "help"
        || cli
            .get_subcommands()
            .any(|sub| sub.get_name() == word || sub.get_all_aliases().any(|alias| alias == word))
}

/// The comma-separated options of every `-o OPTS` (or `-oOPTS`) after the mount point.
fn option_list(rest: &[OsString]) -> Result<Vec<String>, String> {
    let mut options = Vec::new();
    let mut args = rest.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        let list = match arg.strip_prefix("-o") {
            Some("") => args.next().ok_or(
                "-o needs a list of mount options, e.g. -o token_file=FILE,cache_size=10G",
            )?,
            Some(list) => list.to_string().into(),
            None => {
                return Err(format!(
                    "unexpected argument {arg:?}: the mount(8) form is `vm0fs SOURCE MOUNTPOINT -o OPTIONS` \
                     (see `vm0fs --help`)"
                ));
            }
        };
        options.extend(list.split(',').filter(|o| !o.is_empty()).map(String::from));
    }
    Ok(options)
}

/// The `vm0fs mount` flag for one mount option, `None` for an ignored one, an error for an unknown one.
fn flag_for(option: &str) -> Result<Option<String>, String> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    };
    let flag = format!("--{}", name.replace('_', "-"));
    match (name, value) {
        (name, Some(value)) if VALUE_OPTIONS.contains(&name) => Ok(Some(format!("{flag}={value}"))),
        (name, None) if VALUE_OPTIONS.contains(&name) => {
            Err(format!("the mount option {name} needs a value: {name}=..."))
        }
        ("allow_other", None) => Ok(Some(flag)),
        ("ro", None) => Ok(Some("--read-only".into())),
        ("nonempty", None) | ("noexec", None) => Ok(Some(flag)),
        ("verbose", None) => Ok(Some("-v".into())),
        ("comment", Some(_)) => Ok(None),
        (name, None) if IGNORED.contains(&name) => Ok(None),
        (name, _) if name.starts_with("x-") => Ok(None),
        _ => Err(format!(
            "unknown mount option {option:?}. vm0fs takes {}=..., allow_other, ro, nonempty, noexec, verbose, and ignores generic \
             options such as rw, nodev, noatime, _netdev, nofail, noauto, user and x-*",
            VALUE_OPTIONS.join("=..., ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Result<Option<Vec<String>>, String> {
        let cli = clap::Command::new("vm0fs").subcommand(clap::Command::new("mount"));
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        rewrite(&argv, &cli).map(|v| {
            v.map(|v| {
                v.into_iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            })
        })
    }

    #[test]
    fn the_staging_settings_are_mount_options_too() {
        assert_eq!(
            rewritten(&[
                "vm0fs",
                "vm0",
                "/m",
                "-o",
                "commit_delay=0,max_staged_size=1G"
            ]),
            Ok(Some(vec![
                "vm0fs".into(),
                "mount".into(),
                "/m".into(),
                "--commit-delay=0".into(),
                "--max-staged-size=1G".into()
            ]))
        );
    }

    #[test]
    fn options_become_mount_flags() {
        assert_eq!(
            rewritten(&[
                "vm0fs",
                "vm0",
                "/m",
                "-o",
                "rw,cache_size=1G,ro,nodev,x-systemd.automount,comment=a=b"
            ]),
            Ok(Some(vec![
                "vm0fs".into(),
                "mount".into(),
                "/m".into(),
                "--cache-size=1G".into(),
                "--read-only".into()
            ]))
        );
        let with_url = rewritten(&["vm0fs", "https://api.example", "/m", "-overbose"])
            .unwrap()
            .unwrap();
        assert_eq!(with_url[3..], ["--api-url=https://api.example", "-v"]);
    }

    #[test]
    fn ordinary_command_lines_are_left_alone() {
        assert_eq!(rewritten(&["vm0fs", "mount", "/m"]), Ok(None));
        assert_eq!(rewritten(&["vm0fs", "--help", "x"]), Ok(None));
        assert_eq!(rewritten(&["vm0fs", "typo"]), Ok(None));
    }

    #[test]
    fn unknown_options_and_missing_values_are_refused() {
        let err = rewritten(&["vm0fs", "vm0", "/m", "-o", "cache_sise=1G"]).unwrap_err();
        assert!(err.contains("\"cache_sise=1G\""), "{err}");
        assert!(rewritten(&["vm0fs", "vm0", "/m", "-o", "cache_size"]).is_err());
        assert!(rewritten(&["vm0fs", "vm0", "/m", "-x"]).is_err());
    }
}
