//! The README's walk-throughs, run as written against the emulator's demo data: the tour of the tree, and status
//! and prefetch. Ids and times differ from run to run, so the output is checked for its shape and for the fixed
//! names of the demo data; other commands of the guide are run by the test named beside them in the README.

mod common;

use std::path::Path;

use common::emulator::Emulator;
use common::mount::{Mount, ok, q};

/// Runs `script` with the mount point as working directory and `vm0fs` on PATH; returns stdout.
fn in_mount(mount: &Mount, script: &str) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vm0fs")).parent().unwrap();
    ok(&format!(
        "export PATH={}:\"$PATH\" LC_ALL=C && cd {} && {script}",
        q(bin_dir),
        q(mount.mountpoint())
    ))
}

#[test]
fn the_tour_of_the_tree_reads_as_the_readme_shows() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);

    assert_eq!(
        in_mount(&mount, "ls agents volumes artifacts"),
        "agents:\ncoder\ndata-analyst\nresearcher\nreviewer\n\nartifacts:\nmodel-output\nreport\n\n\
         volumes:\nconfigs\ninput-data\nscratch\n"
    );
    let agent: serde_json::Value =
        serde_json::from_str(&in_mount(&mount, "cat agents/coder/agent.json")).unwrap();
    assert_eq!(agent["name"], "coder");

    let versions = in_mount(&mount, "head -5 agents/coder/versions.json");
    assert!(versions.starts_with("[\n  {\n    \"id\": \""), "{versions}");
    assert!(versions.contains("\"version_number\": "), "{versions}");
    let links = in_mount(&mount, "ls -l runs/*/artifact");
    let link = links.lines().next().unwrap_or_default();
    assert!(
        link.starts_with("lrwxrwxrwx 1 ") && link.contains("/artifact -> ../../artifacts/"),
        "{links}"
    );

    let latest = in_mount(&mount, "readlink runs/latest");
    assert_eq!(latest.trim().len(), 36, "a run id: {latest}");
    let listing = in_mount(&mount, "ls -l runs/latest/");
    for file in [
        "ctl",
        "logs",
        "metrics.json",
        "prompt",
        "run.json",
        "status",
    ] {
        assert!(listing.contains(file), "{listing}");
    }
    assert!(
        listing.contains("-rw-r--r-- 1") && listing.contains("-r--r--r-- 1"),
        "{listing}"
    );
    let status_and_prompt = in_mount(&mount, "cat runs/latest/status runs/latest/prompt");
    let status = status_and_prompt.lines().next().unwrap_or_default();
    assert!(
        [
            "pending",
            "running",
            "completed",
            "failed",
            "timeout",
            "cancelled"
        ]
        .contains(&status),
        "{status_and_prompt}"
    );
    let logs = in_mount(&mount, "head -3 runs/latest/logs");
    for line in logs.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(
            fields.len(),
            4,
            "<timestamp> <type> <level> <message>: {line}"
        );
        assert!(fields[0].ends_with('Z'), "{line}");
    }
    let head = in_mount(&mount, "head -4 runs/latest/run.json");
    assert!(
        head.starts_with("{\n  \"id\": \"") && head.contains(latest.trim()),
        "{head}"
    );
    let output = in_mount(
        &mount,
        "for r in runs/*/; do if [ \"$(cat \"$r/status\")\" = completed ]; then cat \"$r/output\"; break; fi; done",
    );
    assert!(output.starts_with("Done: "), "{output}");

    assert_eq!(
        in_mount(&mount, "ls volumes/input-data"),
        "README.md\ndata\ndocs\ndonnées\nempty.txt\nscripts\n日本語.md\n"
    );
    let attrs = in_mount(&mount, "getfattr -d volumes/input-data");
    assert!(
        attrs.starts_with("# file: volumes/input-data\nuser.vm0.id=\"")
            && attrs.contains("\nuser.vm0.version=\""),
        "{attrs}"
    );
    let version = attrs
        .split("user.vm0.version=\"")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap();
    assert_eq!(
        in_mount(
            &mount,
            &format!("ls volumes/input-data@{}/data", &version[..8])
        ),
        "input.csv\nnested\n"
    );
    let copy = tempfile::tempdir().unwrap();
    assert_eq!(
        in_mount(
            &mount,
            &format!(
                "cp -r artifacts/model-output {d}/ && diff -r artifacts/model-output {d}/model-output && echo same",
                d = q(copy.path())
            )
        ),
        "same\n"
    );
}

#[test]
fn status_and_prefetch_read_as_the_readme_shows() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let mp = mount.mountpoint().display().to_string();

    let status = in_mount(&mount, &format!("vm0fs status {}", q(mount.mountpoint())));
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines[0], mp);
    assert!(
        lines[1].starts_with("  api        http://127.0.0.1:"),
        "{status}"
    );
    assert!(lines[2].starts_with("  process    pid "), "{status}");
    assert!(
        lines[3].starts_with("  cache      ") && lines[3].contains(" of 10.0 GiB in 0 archives"),
        "{status}"
    );
    assert_eq!(lines[4], "  downloads  none in flight");

    let fetched = in_mount(
        &mount,
        "vm0fs prefetch volumes/input-data artifacts/model-output",
    );
    let mut fetched: Vec<&str> = fetched.lines().collect();
    fetched.sort();
    assert!(
        fetched[0].starts_with("artifacts/model-output@") && fetched[0].contains(": cached ("),
        "{fetched:?}"
    );
    assert!(fetched[1].starts_with("volumes/input-data@") && fetched[1].contains(": cached ("));
    let pinned = in_mount(&mount, "vm0fs prefetch --pin volumes/input-data");
    assert!(pinned.contains(": cached and pinned ("), "{pinned}");
    let pins = in_mount(&mount, "cat .vm0fs/pins");
    assert_eq!(pins.trim().len(), 64, "one pinned version id: {pins}");
    assert!(in_mount(&mount, "vm0fs status .").contains("in 2 archives (1 pinned, "));
    let unpinned = in_mount(&mount, "vm0fs prefetch --unpin volumes/input-data");
    assert!(unpinned.contains(": unpinned in "), "{unpinned}");
    assert_eq!(in_mount(&mount, "cat .vm0fs/pins"), "");

    assert!(
        !in_mount(&mount, "ls -a").contains(".vm0fs"),
        "the control directory is hidden"
    );
    in_mount(&mount, "ls volumes/configs >/dev/null");
    assert!(in_mount(&mount, "vm0fs status --json").contains("\"archives\": 3"));
    // A whole kind: the empty `scratch` volume has nothing to download and says so.
    let all = in_mount(&mount, "vm0fs prefetch volumes/");
    assert!(
        all.contains("volumes/configs@") && all.contains("volumes/input-data@"),
        "{all}"
    );
    assert!(
        all.contains("scratch: no version yet, nothing to download"),
        "{all}"
    );
}

#[test]
fn scripting_runs_and_versions_read_as_the_readme_shows() {
    let emulator = Emulator::start(
        &[
            &["--seed", "demo", "--max-concurrent-runs", "20"][..],
            &common::emulator::FAST_RUNS,
        ]
        .concat(),
    );
    let mount = Mount::start(&emulator, &[]);

    let jobs = in_mount(
        &mount,
        "for n in 1 2 3; do ( printf 'job-%s\\n' $n > runs/new/coder; echo \"job-$n $(cat runs/new/coder)\" ) & done; wait",
    );
    let mut lines: Vec<&str> = jobs.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{jobs}");
    for (n, line) in lines.iter().enumerate() {
        let (job, id) = line.split_once(' ').unwrap();
        assert_eq!(job, format!("job-{}", n + 1));
        let prompt = in_mount(&mount, &format!("cat runs/{id}/prompt"));
        assert_eq!(prompt, format!("{job}\n"));
    }
    in_mount(
        &mount,
        "printf '{ \"this\": \"is a prompt\" }\\n' > runs/new/coder && cat runs/new/coder >/dev/null",
    );
    assert_eq!(
        in_mount(&mount, "cat runs/latest/prompt"),
        "{ \"this\": \"is a prompt\" }\n"
    );
    in_mount(
        &mount,
        "printf '{\"prompt\": \"Weather\", \"variables\": {\"CITY\": \"Oslo\"}}' > runs/new/coder.json",
    );
    assert_eq!(in_mount(&mount, "cat runs/latest/prompt"), "Weather\n");

    let waited = in_mount(
        &mount,
        "id=$(printf 'Summarise data/input.csv\\n' > runs/new/coder; cat runs/new/coder); vm0fs wait \"$id\"; echo \"exit $?\"",
    );
    assert!(waited.ends_with(" completed\nexit 0\n"), "{waited}");
    let failed = in_mount(
        &mount,
        "id=$(printf 'this will [fail]\\n' > runs/new/coder; cat runs/new/coder); vm0fs wait $(echo $id | cut -c1-8) runs/latest; echo \"exit $?\"",
    );
    assert!(
        failed.contains(" failed\n") && failed.ends_with("exit 3\n"),
        "{failed}"
    );
    assert!(in_mount(&mount, "cat runs/latest/error").contains("simulated failure"));

    let versions = in_mount(&mount, "ls -lU volumes/configs@");
    let rows: Vec<&str> = versions.lines().collect();
    assert_eq!(rows.len(), 3, "total and two versions: {versions}");
    assert!(rows[1].starts_with("dr-xr-xr-x 2 "), "{versions}");
    let oldest = rows[2].rsplit(' ').next().unwrap();
    assert_eq!(
        in_mount(
            &mount,
            &format!("getfattr --only-values -n user.vm0.message volumes/configs@/{oldest}; echo")
        ),
        "First configuration\n"
    );
    assert_eq!(
        in_mount(
            &mount,
            "diff -r volumes/configs@latest volumes/configs && echo same"
        ),
        "same\n"
    );
}
