//! A version keeps what a tar holds: a tree copied into a volume, synced, and read from a fresh mount on an empty
//! cache comes back as it was on the push flow (modes, symlinks with and without `..`, empty directories, times,
//! a git repository after `git gc`), and as its regular files on the `/v1` flow.

mod common;

use std::path::Path;

use common::mount::{Mount, ok, q, vm0fs};
use common::protocol::Protocol;

/// The source tree: an executable, files of several modes, relative symlinks (one climbing with `..`), an empty
/// directory, a hard-linked pair (`data/pair.txt`, `bin/pair.txt`), and a git repository after `git gc`; every
/// time a whole second (a tar header holds seconds).
fn make_source(src: &Path) {
    let s = q(src);
    ok(&format!(
        "cd {s} && mkdir -p bin data/private sub/inner empty && chmod 0750 empty && \
         printf '#!/bin/sh\\necho hi\\n' > bin/run.sh && chmod 0755 bin/run.sh && \
         echo secret > data/private/key && chmod 0600 data/private/key && chmod 0700 data/private && \
         echo shared > data/shared.txt && chmod 0640 data/shared.txt && echo plain > plain.txt && \
         echo pair > data/pair.txt && ln data/pair.txt bin/pair.txt && \
         ln -s ../bin/run.sh sub/up && ln -s ../../data/shared.txt sub/inner/far && ln -s plain.txt here && \
         git init -q repo && cd repo && git config user.email t@example.com && git config user.name t && \
         echo one > one.txt && git add one.txt && git commit -qm one && echo two > two.txt && git add two.txt && \
         git commit -qm two && git gc -q && cd .. && \
         find . -mindepth 1 -exec touch -h -d @1234567890 {{}} + && touch -d @1000000000 bin/run.sh && \
         touch -h -d @1100000000 sub/up && touch -d @1200000000 empty"
    ));
}

/// Each entry below `root` (the root itself excluded) that `filter` selects: path, kind, mode, mtime in seconds,
/// symlink target.
fn listing(root: &Path, filter: &str) -> String {
    ok(&format!(
        "cd {} && find . -mindepth 1 {filter} -printf '%P %y %m %Ts %l\\n' | sort",
        q(root)
    ))
}

/// `cp -r` of what `src` holds, keeping modes, times and hard links (the volume's root keeps its own mode).
fn copy_into(src: &Path, vol: &Path) {
    ok(&format!(
        "cd {} && cp -r --preserve=mode,timestamps,links -- * {}/",
        q(src),
        q(vol)
    ));
}

/// The inode number and link count of each name of the hard-linked pair under `root`.
fn pair(root: &Path) -> Vec<String> {
    ["data/pair.txt", "bin/pair.txt"]
        .iter()
        .map(|name| ok(&format!("stat -c '%i %h' {}", q(&root.join(name)))))
        .collect()
}

fn sync(path: &Path) -> String {
    let out = vm0fs().arg("sync").arg(path).output().expect("run vm0fs");
    assert!(
        out.status.success(),
        "vm0fs sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim_end().lines().count(), 1, "stdout: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The version is stdout alone (for `$(vm0fs sync …)`); a note on what it holds comes on stderr.
    let notes = stderr.lines().filter_map(|l| l.strip_prefix("vm0fs: "));
    std::iter::once(stdout.trim())
        .chain(notes)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn on_the_push_flow_a_tree_comes_back_as_it_was_from_a_fresh_mount() {
    let emu = Protocol::Push.emulator(&[]);
    let src = tempfile::tempdir().unwrap();
    make_source(src.path());
    {
        let m = Mount::start(&emu, &["--commit-delay", "0"]);
        let vol = m.path("volumes/tree");
        std::fs::create_dir(&vol).unwrap();
        copy_into(src.path(), &vol);
        let said = sync(&vol);
        assert_eq!(said.lines().count(), 1, "the version holds it all: {said}");
        // A change dropped with `vm0fs discard` leaves the view on that version, symlinks and all, and the next
        // publish keeps them (the stage is made again over the version as the server holds it).
        ok(&format!("echo scratch > {}/scratch.txt", q(&vol)));
        let out = vm0fs().arg("discard").arg(&vol).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_link(vol.join("sub/up")).unwrap(),
            Path::new("../bin/run.sh")
        );
        assert!(vol.join("empty").is_dir());
        m.unmount();
    }
    let fresh = Mount::start(&emu, &[]);
    let vol = fresh.path("volumes/tree");
    ok(&format!(
        "diff -r --no-dereference {} {}",
        q(src.path()),
        q(&vol)
    ));
    // Modes, kinds, times and targets of everything but git's read-only objects (0444, shown 0644 in a head:
    // see the README), then git's own check.
    let writable = "! -path './repo/.git/objects/*'";
    assert_eq!(listing(&vol, writable), listing(src.path(), writable));
    let all_but_modes = |root: &Path| {
        ok(&format!(
            "cd {} && find . -mindepth 1 -printf '%P %y %Ts %l\\n' | sort",
            q(root)
        ))
    };
    assert_eq!(all_but_modes(&vol), all_but_modes(src.path()));
    ok(&format!(
        "cd {} && git fsck --strict && git log --oneline | wc -l | grep -qx 2",
        q(&vol.join("repo"))
    ));
    ok(&format!("{}/bin/run.sh | grep -qx hi", q(&vol)));
    // The hard-linked pair is one file again: one inode number, a link count of 2.
    let names = pair(&vol);
    assert!(
        names[0] == names[1] && names[0].trim().ends_with(" 2"),
        "{names:?}"
    );

    // A change made over that version keeps everything else: the stage starts from the whole base tree.
    ok(&format!(
        "echo more >> {}/plain.txt && echo more >> {}/plain.txt && touch -d @1300000000 {}/plain.txt {}/plain.txt",
        q(&vol),
        q(src.path()),
        q(&vol),
        q(src.path())
    ));
    sync(&vol);
    fresh.unmount();
    let again = Mount::start(&emu, &[]);
    let vol = again.path("volumes/tree");
    ok(&format!(
        "diff -r --no-dereference {} {}",
        q(src.path()),
        q(&vol)
    ));
    assert_eq!(listing(&vol, writable), listing(src.path(), writable));
}

#[test]
fn on_the_v1_flow_the_regular_files_come_back() {
    let emu = Protocol::V1.emulator(&[]);
    let src = tempfile::tempdir().unwrap();
    make_source(src.path());
    {
        let m = Mount::start(&emu, &["--commit-delay", "0"]);
        let vol = m.path("volumes/tree");
        std::fs::create_dir(&vol).unwrap();
        copy_into(src.path(), &vol);
        let said = sync(&vol);
        let last = said.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("kept on this machine only: 3 symlinks, ")
                && last.contains("empty directories")
                && last.contains("file modes")
                && last.contains("1 hard link (published as a file of its own)")
                && last.ends_with("(the server's /v1 upload takes regular files only)"),
            "{said}"
        );
        assert!(
            said.lines()
                .next()
                .unwrap_or_default()
                .starts_with("volumes/tree@"),
            "{said}"
        );
        assert!(m.logged("kept on this machine only: 3 symlinks"));
        m.unmount();
    }
    let fresh = Mount::start(&emu, &[]);
    let vol = fresh.path("volumes/tree");
    let files = |root: &Path| {
        ok(&format!(
            "cd {} && find . -type f -exec sha256sum {{}} + | sort -k2",
            q(root)
        ))
    };
    assert_eq!(files(&vol), files(src.path()));
    assert!(!vol.join("sub/up").exists() && !vol.join("empty").exists());
    // The pair comes back as two files of the same bytes, each of its own.
    let names = pair(&vol);
    assert!(
        names[0] != names[1] && names.iter().all(|n| n.trim().ends_with(" 1")),
        "{names:?}"
    );
}

/// On the push flow, a change of a mode alone makes no new version (the id names the files' content): `vm0fs sync`
/// and `vm0fs status` say it waits, and the next change of a file publishes it.
#[test]
fn on_the_push_flow_a_mode_change_alone_waits_for_a_change_of_content() {
    let emu = Protocol::Push.emulator(&[]);
    let m = Mount::start(&emu, &["--commit-delay", "0"]);
    let vol = m.path("volumes/waits");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!("echo hi > {}/run.sh", q(&vol)));
    let first = sync(&vol);
    ok(&format!("chmod 0755 {}/run.sh", q(&vol)));
    let said = sync(&vol);
    let mut lines = said.lines();
    assert_eq!(lines.next(), Some(first.as_str()), "{said}");
    assert!(
        lines.next().unwrap_or_default().starts_with("waiting: "),
        "{said}"
    );
    let status = vm0fs().arg("status").arg(m.mountpoint()).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("waiting: changes of modes"), "{status}");
    ok(&format!("echo more > {}/other.txt", q(&vol)));
    let second = sync(&vol);
    assert_eq!(second.lines().count(), 1, "{second}");
    assert_ne!(second, first);
    m.unmount();
    let fresh = Mount::start(&emu, &[]);
    let mode = ok(&format!(
        "stat -c %a {}",
        q(&fresh.path("volumes/waits/run.sh"))
    ));
    assert_eq!(mode.trim(), "755");
}

/// An archive made elsewhere with a hard link and a symlink climbing with `..` is read with both: the link
/// count of the pair is 2 (one cached file), and the symlink is kept (the stage would accept it too).
#[test]
fn an_archive_with_a_hard_link_and_a_climbing_symlink_is_read_with_both() {
    let emu = Protocol::Push.emulator(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    ok(&format!(
        "mkdir -p {s}/sub && echo data > {s}/a && ln {s}/a {s}/b && ln -s ../a {s}/sub/up && \
         tar -C {s} -czf {t} a b sub",
        s = q(&src),
        t = q(&tmp.path().join("a.tar.gz"))
    ));
    let bytes = std::fs::read(tmp.path().join("a.tar.gz")).unwrap();
    emu.add_raw_archive("volumes", "linked", &bytes);
    let m = Mount::start(&emu, &[]);
    let vol = m.path("volumes/linked");
    assert_eq!(ok(&format!("stat -c %h {}/b", q(&vol))).trim(), "2");
    assert_eq!(
        ok(&format!("cat {}/b {}/sub/up", q(&vol), q(&vol))),
        "data\ndata\n"
    );
    assert_eq!(
        std::fs::read_link(vol.join("sub/up")).unwrap(),
        Path::new("../a")
    );
}
