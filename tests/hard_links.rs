//! Hard links inside a volume, through a real mount: `ln` makes a second name of one file (one inode, link count
//! 2, a write through one name read through the other), which survives the unlink or rename of either name and a
//! remount; `tar x` of an archive with hard links and `rsync -aH` keep their pairs; a link out of the volume, or into
//! it from elsewhere, is `EXDEV`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::mount::{Mount, ok, q, sh};
use common::protocol::Protocol;

/// (inode number, link count) of `path`.
fn ino_nlink(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.ino(), meta.nlink())
}

#[test]
fn ln_in_a_volume_makes_one_file_under_two_names() {
    let emu = Protocol::Push.emulator(&["--seed", "demo"]);
    let cache = tempfile::tempdir().unwrap();
    let m = Mount::start_with_cache(&emu, cache.path(), &["--commit-delay", "3600"]);
    let vol = m.path("volumes/links");
    std::fs::create_dir(&vol).unwrap();
    let (a, b, c) = (vol.join("a"), vol.join("sub/b"), vol.join("c"));
    std::fs::create_dir(vol.join("sub")).unwrap();
    std::fs::write(&a, b"first").unwrap();
    let before = ino_nlink(&a);
    ok(&format!("ln {} {}", q(&a), q(&b)));
    let (ino, nlink) = ino_nlink(&b);
    assert_eq!(
        (ino, nlink),
        (before.0, 2),
        "the new name is the same inode"
    );
    assert_eq!(ino_nlink(&a), (ino, 2));
    std::fs::write(&b, b"second, longer").unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), b"second, longer");
    ok(&format!("echo appended >> {}", q(&a)));
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        "second, longerappended\n"
    );
    // An existing name, a directory, and a link out of the volume are refused.
    let refused = sh(&format!("ln {} {} 2>&1", q(&a), q(&b)));
    assert!(!refused.status.success());
    let err = std::fs::hard_link(vol.join("sub"), vol.join("dir2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    std::os::unix::fs::symlink("a", vol.join("sym")).unwrap();
    let err = std::fs::hard_link(vol.join("sym"), vol.join("sym2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let other = m.path("volumes/other");
    std::fs::create_dir(&other).unwrap();
    let err = std::fs::hard_link(&a, other.join("a")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    let artifact = m.path("artifacts/report/report.md");
    let err = std::fs::hard_link(&artifact, vol.join("report.md")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    // A rename of the oldest name keeps the inode; so does its unlink, for the name left.
    std::fs::rename(&a, &c).unwrap();
    assert_eq!(ino_nlink(&c), (ino, 2));
    assert_eq!(ino_nlink(&b), (ino, 2));
    std::fs::rename(&c, &b).unwrap();
    assert_eq!(
        (ino_nlink(&c), ino_nlink(&b)),
        ((ino, 2), (ino, 2)),
        "a rename between two names of one file changes nothing"
    );
    std::fs::remove_file(&c).unwrap();
    assert_eq!(ino_nlink(&b), (ino, 1));
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        "second, longerappended\n"
    );
    // A remount (the stage's journal replayed) keeps a pair.
    ok(&format!("ln {} {}", q(&b), q(&a)));
    m.unmount();
    let m = Mount::start_with_cache(&emu, cache.path(), &["--commit-delay", "3600"]);
    let vol = m.path("volumes/links");
    // An entry served while its version still downloads has a number of its own (its other names may not be
    // there yet): the pair is one inode once the version is all here, which a listing waits for.
    ok(&format!("ls -R {} >/dev/null", q(&vol)));
    let (ino, nlink) = ino_nlink(&vol.join("a"));
    assert_eq!((ino_nlink(&vol.join("sub/b")), nlink), ((ino, 2), 2));
    std::fs::write(vol.join("a"), b"after remount").unwrap();
    assert_eq!(std::fs::read(vol.join("sub/b")).unwrap(), b"after remount");
    // A rename over the oldest name leaves the other name its inode; the file renamed there is another.
    let (a, b) = (vol.join("a"), vol.join("sub/b"));
    std::fs::write(vol.join("x"), b"x").unwrap();
    std::fs::rename(vol.join("x"), &a).unwrap();
    assert_eq!(ino_nlink(&b), (ino, 1));
    assert_ne!(ino_nlink(&a).0, ino);
    assert_eq!(std::fs::read(&b).unwrap(), b"after remount");
    assert_eq!(std::fs::read(&a).unwrap(), b"x");
}

/// `tar x` of an archive holding hard links, and `rsync -aH` of a tree with a linked pair, give pairs that are
/// one inode each in the volume.
#[test]
fn tar_and_rsync_keep_hard_links_in_a_volume() {
    let emu = Protocol::Push.emulator(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    ok(&format!(
        "mkdir -p {s}/d && echo data > {s}/one && ln {s}/one {s}/d/two && echo solo > {s}/solo && \
         tar -C {s} -cf {t} .",
        s = q(&src),
        t = q(&tmp.path().join("t.tar"))
    ));
    let m = Mount::start(&emu, &["--commit-delay", "3600"]);
    let vol = m.path("volumes/unpacked");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!(
        "tar -C {} -xf {}",
        q(&vol),
        q(&tmp.path().join("t.tar"))
    ));
    let one = ino_nlink(&vol.join("one"));
    assert_eq!(one.1, 2);
    assert_eq!(ino_nlink(&vol.join("d/two")), one);
    assert_eq!(ino_nlink(&vol.join("solo")).1, 1);
    let synced = m.path("volumes/synced");
    std::fs::create_dir(&synced).unwrap();
    ok(&format!("rsync -aH {}/ {}/", q(&src), q(&synced)));
    let one = ino_nlink(&synced.join("one"));
    assert_eq!(one.1, 2);
    assert_eq!(ino_nlink(&synced.join("d/two")), one);
    ok(&format!("diff -r {} {}", q(&src), q(&synced)));
}
