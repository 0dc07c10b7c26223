//! Staged changes against a head that moved on the server, through real mounts: changes to different paths are
//! rebased and published with both sides; changes to the same path are not published, are reported by `vm0fs
//! sync`, `vm0fs status` and the log, and are resolved by `vm0fs sync --force` or `vm0fs discard`; a volume
//! deleted on the server keeps its staged changes.
//!
//! The other side is the emulator's control route that publishes a head as another client would
//! (`/_control/storages/volumes/<name>/head`). Mounts publish only on `vm0fs sync` (`--commit-delay 0`), so
//! every version the emulator holds comes from a step of the test. Each test runs against both upload protocols.

mod common;

use std::path::Path;
use std::process::Output;

use common::emulator::Emulator;
use common::mount::{Mount, vm0fs};
use common::protocol::Protocol;
use serde_json::{Value, json};

fn mount(emu: &Emulator) -> Mount {
    Mount::start(emu, &["--commit-delay", "0"])
}

fn run(args: &[&str], path: &Path) -> Output {
    vm0fs().args(args).arg(path).output().expect("run vm0fs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// `vm0fs sync PATH` that must succeed: its stdout.
fn sync(path: &Path) -> String {
    let out = run(&["sync"], path);
    assert!(
        out.status.success(),
        "vm0fs sync failed: {}",
        text(&out.stderr)
    );
    said_by_sync(&text(&out.stdout), &text(&out.stderr))
}

/// What `vm0fs sync` said: its stdout, which is the version alone (one line, for `$(vm0fs sync …)`), then the notes
/// it wrote to stderr (`vm0fs: kept on this machine only: …`), one line each.
fn said_by_sync(stdout: &str, stderr: &str) -> String {
    assert_eq!(stdout.trim_end().lines().count(), 1, "stdout: {stdout}");
    let notes = stderr.lines().filter_map(|l| l.strip_prefix("vm0fs: "));
    std::iter::once(stdout.trim_end())
        .chain(notes)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Another client publishes: `files` (path → content, `null` deletes) over the current head of `name`.
fn publish_elsewhere(emu: &Emulator, name: &str, files: Value) -> String {
    let (status, version) = emu.post_json(
        &format!("/_control/storages/volumes/{name}/head"),
        &json!({"files": files, "keep_head": true, "message": "published elsewhere"}),
    );
    assert_eq!(status, 200, "{version}");
    version["id"].as_str().expect("version id").to_string()
}

fn head(emu: &Emulator, name: &str) -> Option<String> {
    let id = emu.storage_id("volumes", name)?;
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    detail["current_version_id"].as_str().map(String::from)
}

fn version_count(emu: &Emulator, name: &str) -> usize {
    let id = emu.storage_id("volumes", name).expect("the volume exists");
    let (status, page) = emu.get_json(&format!("/v1/volumes/{id}/versions?limit=100"));
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().map_or(0, Vec::len)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The names in a directory, sorted (a listing is never served from the kernel's cache for a volume's head).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn status(m: &Mount) -> String {
    text(&run(&["status"], m.mountpoint()).stdout)
}

/// A volume `name` published from `m` with `files`, then edited elsewhere by `theirs`: their version's id.
fn diverge(emu: &Emulator, m: &Mount, name: &str, files: &[(&str, &str)], theirs: Value) -> String {
    let vol = m.path(&format!("volumes/{name}"));
    std::fs::create_dir(&vol).unwrap();
    for (path, content) in files {
        std::fs::write(vol.join(path), content).unwrap();
    }
    sync(&vol);
    publish_elsewhere(emu, name, theirs)
}

both_protocols!(
    changes_to_different_paths_are_rebased_and_published_with_both_sides,
    changes_to_the_same_path_are_kept_and_force_publishes_them_as_they_are,
    discard_drops_the_staged_changes_and_shows_the_head,
    a_volume_deleted_on_the_server_keeps_its_staged_changes_and_sync_says_so,
    local_only_changes_follow_a_moved_head_and_sync_prints_the_servers_head,
);

fn changes_to_different_paths_are_rebased_and_published_with_both_sides(protocol: Protocol) {
    let emu = protocol.emulator(&[]);
    let m = mount(&emu);
    let theirs = diverge(
        &emu,
        &m,
        "shared",
        &[
            ("a.txt", "a0"),
            ("b.txt", "b0"),
            ("c.txt", "c0"),
            ("d.txt", "d0"),
        ],
        json!({"b.txt": "b from elsewhere", "t.txt": "new elsewhere", "d.txt": null}),
    );
    let vol = m.path("volumes/shared");
    std::fs::write(vol.join("a.txt"), "a changed here").unwrap();
    std::fs::write(vol.join("m.txt"), "new here").unwrap();
    std::fs::remove_file(vol.join("c.txt")).unwrap();

    let line = sync(&vol);
    let merged = head(&emu, "shared").expect("a head");
    assert_ne!(merged, theirs, "the merge was published");
    assert_eq!(line, format!("volumes/shared@{}", &merged[..8]));
    assert_eq!(version_count(&emu, "shared"), 3, "ours, theirs, the merge");
    assert!(m.logged("rebased the staged changes"), "{}", m.stderr());
    // The live view shows their new file at once (never looked up before).
    assert_eq!(read(&vol.join("t.txt")), "new elsewhere");
    drop(m);

    let fresh = mount(&emu);
    let vol = fresh.path("volumes/shared");
    assert_eq!(names(&vol), ["a.txt", "b.txt", "m.txt", "t.txt"]);
    assert_eq!(read(&vol.join("a.txt")), "a changed here");
    assert_eq!(read(&vol.join("b.txt")), "b from elsewhere");
    assert_eq!(read(&vol.join("m.txt")), "new here");
    assert_eq!(read(&vol.join("t.txt")), "new elsewhere");
    // Their version stays readable as it was.
    let pinned = fresh.path(&format!("volumes/shared@{}", &theirs[..8]));
    assert_eq!(names(&pinned), ["a.txt", "b.txt", "c.txt", "t.txt"]);
    assert_eq!(read(&pinned.join("a.txt")), "a0");
}

/// Both sides changed `f.txt`: the sync fails naming it, the status and the log show it, nothing is published.
fn conflict(emu: &Emulator, m: &Mount, name: &str) -> String {
    let theirs = diverge(
        emu,
        m,
        name,
        &[("f.txt", "base!"), ("same.txt", "same")],
        json!({"f.txt": "theirs", "other.txt": "theirs too"}),
    );
    let vol = m.path(&format!("volumes/{name}"));
    std::fs::write(vol.join("f.txt"), "local!").unwrap();
    std::fs::write(vol.join("g.txt"), "only here").unwrap();
    let out = run(&["sync"], &vol);
    assert!(!out.status.success(), "a conflicting sync succeeded");
    let err = text(&out.stderr);
    assert!(
        err.contains("both sides changed 1 path(s): f.txt") && err.contains(&theirs[..8]),
        "{err}"
    );
    assert!(
        err.contains("--force") && err.contains("vm0fs discard"),
        "{err}"
    );
    assert_eq!(head(emu, name).as_deref(), Some(theirs.as_str()));
    let status = status(m);
    assert!(
        status.contains(&format!("volumes/{name}")) && status.contains("NOT PUBLISHED"),
        "{status}"
    );
    assert!(status.contains("f.txt"), "{status}");
    assert!(
        m.logged("both sides changed 1 path(s): f.txt"),
        "{}",
        m.stderr()
    );
    assert_eq!(read(&vol.join("f.txt")), "local!", "the changes stay");
    theirs
}

fn changes_to_the_same_path_are_kept_and_force_publishes_them_as_they_are(protocol: Protocol) {
    let emu = protocol.emulator(&[]);
    let m = mount(&emu);
    let theirs = conflict(&emu, &m, "clash");
    let vol = m.path("volumes/clash");
    let out = run(&["sync", "--force"], &vol);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let forced = head(&emu, "clash").expect("a head");
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!("volumes/clash@{}", &forced[..8]))
            && said.contains(&format!("replaced the head volumes/clash@{}", &theirs[..8])),
        "{said}"
    );
    assert!(!status(&m).contains("NOT PUBLISHED"));
    drop(m);

    let fresh = mount(&emu);
    let vol = fresh.path("volumes/clash");
    assert_eq!(names(&vol), ["f.txt", "g.txt", "same.txt"]);
    assert_eq!(read(&vol.join("f.txt")), "local!");
    let earlier = fresh.path(&format!("volumes/clash@{}", &theirs[..8]));
    assert_eq!(read(&earlier.join("f.txt")), "theirs");
    assert_eq!(read(&earlier.join("other.txt")), "theirs too");
}

fn discard_drops_the_staged_changes_and_shows_the_head(protocol: Protocol) {
    let emu = protocol.emulator(&[]);
    let m = mount(&emu);
    let theirs = conflict(&emu, &m, "dropped");
    let vol = m.path("volumes/dropped");
    let out = run(&["discard"], &vol);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("dropped the staged changes (")
            && said.contains(&format!("shows its head volumes/dropped@{}", &theirs[..8])),
        "{said}"
    );
    assert_eq!(names(&vol), ["f.txt", "other.txt", "same.txt"]);
    // Same length as the local bytes, so a size the kernel still caches cannot hide the change.
    assert_eq!(read(&vol.join("f.txt")), "theirs");
    assert!(!status(&m).contains("volumes/dropped"), "{}", status(&m));
    assert_eq!(head(&emu, "dropped").as_deref(), Some(theirs.as_str()));
    // Nothing is left to publish; a discard with nothing staged says so.
    assert_eq!(sync(&vol), format!("volumes/dropped@{}", &theirs[..8]));
    let again = text(&run(&["discard"], &vol).stdout);
    assert!(again.contains("nothing was staged"), "{again}");
}

fn a_volume_deleted_on_the_server_keeps_its_staged_changes_and_sync_says_so(protocol: Protocol) {
    let emu = protocol.emulator(&[]);
    let m = mount(&emu);
    let vol = m.path("volumes/doomed");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("kept.txt"), "published").unwrap();
    sync(&vol);
    std::fs::write(vol.join("staged.txt"), "staged").unwrap();
    let id = emu.storage_id("volumes", "doomed").unwrap();
    let deleted = emu
        .client()
        .delete(emu.url(&format!("/v1/volumes/{id}")))
        .bearer_auth(emu.token())
        .send()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);

    let out = run(&["sync"], &vol);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("volumes/doomed was deleted on the server")
            && err.contains("staged changes are kept"),
        "{err}"
    );
    assert!(
        status(&m).contains("deleted on the server"),
        "{}",
        status(&m)
    );
    let stage = m.cache_dir().join("stage").join(&id);
    assert!(
        stage.join("journal").is_file(),
        "the changes are still staged"
    );

    let out = run(&["discard"], &vol);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("dropped the staged changes") && said.contains("no longer exists"),
        "{said}"
    );
    assert!(!stage.exists());
}

/// Issue 21, defect 1: what a version cannot hold (a mode, a symlink, an empty directory) stays staged; it must
/// not freeze the view on the version it was made over. Another machine publishes: `vm0fs sync` prints the
/// server's head, the view shows their file with ours carried over it, a later head is followed without a sync,
/// and `vm0fs discard` says which local-only items it drops.
fn local_only_changes_follow_a_moved_head_and_sync_prints_the_servers_head(protocol: Protocol) {
    use std::os::unix::fs::PermissionsExt;
    let emu = protocol.emulator(&[]);
    let m = Mount::start(&emu, &["--commit-delay", "0", "--metadata-ttl", "1"]);
    let theirs = diverge(
        &emu,
        &m,
        "modes",
        &[("a.txt", "a"), ("keep.txt", "k")],
        json!({"b.txt": "b from elsewhere"}),
    );
    let vol = m.path("volumes/modes");
    let executable = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(vol.join("a.txt"), executable).unwrap();
    std::os::unix::fs::symlink("keep.txt", vol.join("link")).unwrap();
    std::fs::create_dir(vol.join("empty")).unwrap();

    let said = sync(&vol);
    assert_eq!(head(&emu, "modes").as_deref(), Some(theirs.as_str()));
    assert_eq!(
        said.lines().next().unwrap_or_default(),
        format!("volumes/modes@{}", &theirs[..8]),
        "sync printed a stale version"
    );
    // Its last line says where the local-only items stand (issue 22): kept here on /v1; waiting for a change of
    // content on the push flow, whose archive holds them.
    let last = said.lines().last().unwrap_or_default();
    match protocol {
        Protocol::V1 => assert_eq!(
            last,
            "kept on this machine only: 1 symlink, 1 empty directory, 1 file mode (the server's /v1 upload \
             takes regular files only)"
        ),
        Protocol::Push => assert!(last.starts_with("waiting: "), "{said}"),
    }
    assert_eq!(
        version_count(&emu, "modes"),
        2,
        "nothing of ours needed publishing"
    );
    assert_eq!(names(&vol), ["a.txt", "b.txt", "empty", "keep.txt", "link"]);
    assert_eq!(read(&vol.join("b.txt")), "b from elsewhere");
    let mode = std::fs::metadata(vol.join("a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o755,
        "the local mode is carried over the new head"
    );
    assert_eq!(
        std::fs::read_link(vol.join("link")).unwrap(),
        Path::new("keep.txt")
    );

    // A later head is shown without any sync: the view is always the head plus what is staged.
    let later = publish_elsewhere(&emu, "modes", json!({"c.txt": "c from elsewhere"}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !names(&vol).contains(&"c.txt".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the view never showed the head {later}: {:?}",
            names(&vol)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        names(&vol),
        ["a.txt", "b.txt", "c.txt", "empty", "keep.txt", "link"]
    );
    let said = sync(&vol);
    assert_eq!(
        said.lines().next().unwrap_or_default(),
        format!("volumes/modes@{}", &later[..8])
    );

    let out = run(&["discard"], &vol);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("1 symlink,")
            && said.contains("1 empty directory,")
            && said.contains("1 file mode other than 0644"),
        "discard does not say which local-only items it dropped: {said}"
    );
    assert_eq!(names(&vol), ["a.txt", "b.txt", "c.txt", "keep.txt"]);
}
