//! Runs and storages used from scripts and by hand (issue 16), through real mounts with the tools people use:
//! parallel shell jobs and Python threads starting runs on one agent, vim, `vm0fs wait`, `cp -r` as another user,
//! a large `runs/` behind a slow API, versions, `df`, `ls -a`, and what the log and the messages say.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::emulator::{Emulator, FAST_RUNS};
use common::mount::{Mount, ok, q, sh, vm0fs};
use serde_json::Value;

/// The demo data, runs that move quickly, and room for the demo's four moving runs and eight more at once.
fn fast_emulator() -> Emulator {
    Emulator::start(
        &[
            &["--seed", "demo", "--max-concurrent-runs", "20"][..],
            &FAST_RUNS,
        ]
        .concat(),
    )
}

fn prompt_of(emulator: &Emulator, id: &str) -> String {
    let (status, run) = emulator.get_json(&format!("/v1/runs/{id}"));
    assert_eq!(status, 200, "runs/{id}: {run}");
    run["prompt"].as_str().unwrap_or_default().to_string()
}

/// `<prompt> <id>` lines as the jobs print them, checked: each id is a run whose prompt is the job's own.
fn check_each_reads_its_own(emulator: &Emulator, lines: &str, count: usize) {
    let pairs: Vec<(&str, &str)> = lines.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(pairs.len(), count, "every writer reports an id:\n{lines}");
    let mut ids: Vec<&str> = pairs.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        count,
        "each writer read a different run:\n{lines}"
    );
    for (prompt, id) in pairs {
        assert_eq!(prompt_of(emulator, id), prompt, "run {id}");
    }
}

#[test]
fn eight_parallel_shell_jobs_each_read_back_their_own_run() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let file = q(&mount.path("runs/new/coder"));
    // The pattern of the issue: write the prompt, wait, read the file back; builtin printf, and /usr/bin/printf
    // with cat (siblings), half each.
    let script = format!(
        "for n in 1 2 3 4 5 6 7 8; do \
           if [ $((n % 2)) = 0 ]; then \
             ( printf 'job-%s\\n' $n > {file}; sleep 1; echo \"job-$n $(cat {file})\" ) & \
           else \
             ( /usr/bin/printf 'job-%s\\n' $n > {file}; sleep 1; echo \"job-$n $(cat {file})\" ) & \
           fi; \
         done; wait"
    );
    let lines = ok(&script);
    check_each_reads_its_own(&emulator, &lines, 8);
}

#[test]
fn eight_python_threads_each_read_back_their_own_run() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let script = r#"
import sys, threading
path = sys.argv[1]
out, lock = [], threading.Lock()
def job(n):
    with open(path, "w") as f:
        f.write(f"thread-{n}\n")
    with open(path) as f:
        run = f.read().strip()
    with lock:
        out.append(f"thread-{n} {run}")
threads = [threading.Thread(target=job, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(out))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mount.path("runs/new/coder"))
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    check_each_reads_its_own(&emulator, &String::from_utf8_lossy(&output.stdout), 8);
}

#[test]
fn reading_back_through_the_descriptor_that_wrote_gives_its_run() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b"same descriptor\n")
print(os.pread(fd, 100, 0).decode().strip())
os.close(fd)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mount.path("runs/new/coder"))
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(prompt_of(&emulator, &id), "same descriptor");
}

/// Distant relatives in one session read back the run id: a nephew (`tee` in a subshell), and cousins (each under
/// its own `timeout`); a reader of another session fails with `ENOENT` instead of reading an empty file.
#[test]
fn a_run_id_is_read_back_by_distant_relatives_and_never_empty() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let file = q(&mount.path("runs/new/coder"));
    let id = ok(&format!(
        "(echo nephew | tee {file} >/dev/null); cat {file}"
    ));
    assert_eq!(prompt_of(&emulator, id.trim()), "nephew", "{id:?}");
    let id = ok(&format!(
        "timeout 20 sh -c \"echo cousin > {file}\"; timeout 10 cat {file}"
    ));
    assert_eq!(prompt_of(&emulator, id.trim()), "cousin", "{id:?}");
    let out = sh(&format!("setsid -w cat {file}"));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{out:?}"
    );
    assert!(
        mount.logged("runs/new/coder: no run was started through it by process"),
        "{}",
        mount.stderr()
    );
}

#[test]
fn vim_starts_from_an_empty_buffer_and_sends_only_what_was_typed() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let file = mount.path("runs/new/coder");
    // Someone else (another session) started a run through this file before.
    ok(&format!(
        "setsid -w sh -c \"printf 'earlier\\n' > {}\"",
        q(&file)
    ));
    let before = emulator.stats()["runs_created"].as_u64().unwrap();
    let out = Command::new("vim")
        .args([
            "-es",
            "-n",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-N",
            "-c",
            "normal! iTyped in vim",
            "-c",
            // Nobody of this session wrote, so vim cannot read the file (`ENOENT`) and opens it read-only.
            "wq!",
        ])
        .arg(&file)
        .output()
        .expect("run vim");
    assert!(out.status.success(), "vim -es: {out:?}");
    let stats = emulator.stats();
    assert_eq!(
        stats["runs_created"].as_u64().unwrap(),
        before + 1,
        "{stats}"
    );
    let (_, runs) = emulator.get_json("/v1/runs?limit=1");
    assert_eq!(runs["data"][0]["prompt"], "Typed in vim", "{runs}");
}

#[test]
fn a_brace_prompt_is_text_and_bodies_go_to_the_json_file() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let text = q(&mount.path("runs/new/coder"));
    let json = q(&mount.path("runs/new/coder.json"));
    let id = ok(&format!(
        "printf '{{ fix this }}\\n' > {text} && cat {text}"
    ));
    assert_eq!(prompt_of(&emulator, id.trim()), "{ fix this }");
    let id = ok(&format!(
        "printf '{{\"prompt\": \"from json\", \"variables\": {{\"CITY\": \"Oslo\"}}}}' > {json} && cat {json}"
    ));
    assert_eq!(prompt_of(&emulator, id.trim()), "from json");
    let before = emulator.stats()["runs_created"].as_u64().unwrap();
    let out = sh(&format!("printf '{{not json' | tee {json}"));
    assert!(!out.status.success(), "a malformed body must fail: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{out:?}"
    );
    assert_eq!(emulator.stats()["runs_created"].as_u64().unwrap(), before);
    assert!(ok(&format!("ls {}", q(&mount.path("runs/new")))).contains("coder.json"));
}

#[test]
fn an_empty_write_starts_nothing_and_clears_a_stale_error() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let json = q(&mount.path("runs/new/coder.json"));
    let before = emulator.stats()["runs_created"].as_u64().unwrap();
    let shown = ok(&format!("printf '{{bad' > {json}; cat {json}"));
    assert!(shown.starts_with("error: "), "{shown}");
    let shown = ok(&format!("printf '\\n' > {json} && cat {json}"));
    assert_eq!(shown, "", "an empty write leaves nothing behind");
    assert_eq!(emulator.stats()["runs_created"].as_u64().unwrap(), before);
}

/// `vm0fs wait ARGS` in `dir`; its output.
fn wait_in(dir: &Path, args: &[&str]) -> Output {
    vm0fs()
        .arg("wait")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run vm0fs wait")
}

fn start(mount: &Mount, prompt: &str) -> String {
    let file = q(&mount.path("runs/new/coder"));
    ok(&format!("printf '%s\\n' '{prompt}' > {file} && cat {file}"))
        .trim()
        .to_string()
}

#[test]
fn wait_tells_how_runs_ended_in_its_exit_status() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let completed = start(&mount, "all good");
    let failed = start(&mount, "this will [fail]");
    let timed_out = start(&mount, "this will [timeout]");
    let cancelled = start(&mount, "cancel me");
    ok(&format!(
        "echo CANCEL > {}",
        q(&mount.path(&format!("runs/{cancelled}/ctl")))
    ));

    let out = wait_in(mount.mountpoint(), &[&completed]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{completed} completed\n")
    );
    for (id, code, word) in [
        (&failed, 3, "failed"),
        (&timed_out, 4, "timeout"),
        (&cancelled, 5, "cancelled"),
    ] {
        // By 8-character prefix, by path, and with --mount from elsewhere.
        let out = wait_in(mount.mountpoint(), &[&id[..8]]);
        assert_eq!(out.status.code(), Some(code), "{word}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{id} {word}\n")
        );
        let out = wait_in(
            Path::new("/"),
            &[&mount.path(&format!("runs/{id}")).to_string_lossy()],
        );
        assert_eq!(out.status.code(), Some(code), "{word} by path: {out:?}");
    }
    let out = wait_in(
        Path::new("/"),
        &[
            "--mount",
            &mount.mountpoint().to_string_lossy(),
            &completed,
            &failed,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = wait_in(mount.mountpoint(), &["runs/latest"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "the newest run is the cancelled one: {out:?}"
    );
    let out = wait_in(mount.mountpoint(), &["deadbeef"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such run"),
        "{out:?}"
    );
}

#[test]
fn failed_runs_have_an_error_file_and_ctl_tells_an_ended_run_from_a_typo() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &[]);
    let failed = start(&mount, "this will [fail]");
    let out = wait_in(mount.mountpoint(), &[&failed]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let error =
        std::fs::read_to_string(mount.path(&format!("runs/{}/error", &failed[..8]))).unwrap();
    assert!(error.contains("simulated failure"), "{error}");
    let completed = start(&mount, "fine");
    assert_eq!(
        wait_in(mount.mountpoint(), &[&completed]).status.code(),
        Some(0)
    );
    assert!(!mount.path(&format!("runs/{completed}/error")).exists());

    let ctl = q(&mount.path(&format!("runs/{failed}/ctl")));
    let usage = ok(&format!("cat {ctl}"));
    assert!(usage.contains("cancel"), "{usage}");
    let ended = sh(&format!("/bin/echo cancel > {ctl}"));
    assert!(
        String::from_utf8_lossy(&ended.stderr).contains("No such process"),
        "{ended:?}"
    );
    let typo = sh(&format!("/bin/echo cancle > {ctl}"));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("Invalid argument"),
        "{typo:?}"
    );
}

#[test]
fn another_user_can_copy_a_run_directory() {
    let emulator = fast_emulator();
    let mount = Mount::start(&emulator, &["--allow-other"]);
    ok(&format!("chmod 0755 {}", q(mount.parent_dir())));
    let id = start(&mount, "copy me");
    assert_eq!(wait_in(mount.mountpoint(), &[&id]).status.code(), Some(0));
    let dest = tempfile::tempdir().unwrap();
    ok(&format!("chmod 0777 {}", q(dest.path())));
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "cp",
            "-r",
        ])
        .arg(mount.path(&format!("runs/{id}")))
        .arg(dest.path().join("copy"))
        .output()
        .expect("setpriv runs");
    assert!(out.status.success(), "cp -r as nobody: {out:?}");
    let copied = dest.path().join("copy");
    assert_eq!(
        std::fs::read_to_string(copied.join("prompt")).unwrap(),
        "copy me\n"
    );
    assert!(
        std::fs::read_to_string(copied.join("ctl"))
            .unwrap()
            .contains("cancel")
    );
}

/// Requests the emulator has answered so far.
fn requests(emulator: &Emulator) -> u64 {
    emulator.stats()["requests"].as_u64().unwrap()
}

#[test]
fn a_refresh_of_a_large_runs_listing_is_one_request_when_nothing_changed() {
    // No demo data: its runs that stay running would each ask for their detail.
    let emulator = Emulator::start(&FAST_RUNS);
    let (status, body) = emulator.post_json("/_control/generate/runs?count=10000", &Value::Null);
    assert_eq!(status, 200, "{body}");
    let total = body["total_runs"].as_u64().unwrap() as usize;
    let mount = Mount::start(&emulator, &[]);
    let runs = q(&mount.path("runs"));
    // The first listing pages through all 10,000 runs: on a loaded machine, longer than `ok` waits.
    let out = Command::new("timeout")
        .args(["600", "sh", "-c", &format!("ls -f {runs} | wc -l")])
        .output()
        .expect("run ls");
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    // Every run, `new`, `latest`, `.` and `..`.
    assert_eq!(listed.trim(), (total + 4).to_string());
    emulator.set_faults(serde_json::json!({"latency_ms": 300}));
    // Past the listing's two-second TTL, nothing new: one request (the newest page). `ls`, not `ls -l`: the
    // readlink of `latest` by `ls -l` comes after the whole listing, which may be past the next TTL on a loaded
    // machine, and would rightly ask again.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let before = requests(&emulator);
    let listed = ok(&format!("ls {runs} | wc -l"));
    assert_eq!(
        requests(&emulator) - before,
        1,
        "a refresh with nothing new"
    );
    assert_eq!(
        listed.trim(),
        (total + 2).to_string(),
        "every run, new and latest"
    );
    // A new run (ended, as the others) appears after one request too.
    let file = q(&mount.path("runs/new/bench-agent"));
    let id = ok(&format!("printf 'one more\\n' > {file} && cat {file}"));
    let id = id.trim();
    emulator.set_faults(serde_json::json!({"latency_ms": 0}));
    emulator.wait_run_terminal(id);
    emulator.set_faults(serde_json::json!({"latency_ms": 300}));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let before = requests(&emulator);
    assert!(ok(&format!("ls {runs}")).contains(id));
    assert_eq!(
        requests(&emulator) - before,
        1,
        "a refresh with one new run"
    );
}

#[test]
fn versions_are_listed_newest_first_and_latest_is_the_head() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let volumes = mount.path("volumes");
    let head = ok(&format!(
        "getfattr --only-values -n user.vm0.version {}",
        q(&volumes.join("configs"))
    ));
    let listed = ok(&format!("ls -U {}", q(&volumes.join("configs@"))));
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.len() >= 2, "the demo volume has versions: {listed}");
    assert_eq!(names[0], &head[..8], "newest first, by 8 hex characters");
    // Sorted by mtime (creation), `ls -t` gives the same order.
    let by_time = ok(&format!("ls -t {}", q(&volumes.join("configs@"))));
    assert_eq!(by_time, listed);
    let size = ok(&format!(
        "getfattr --only-values -n user.vm0.size {}",
        q(&volumes.join(format!("configs@/{}", names[1])))
    ));
    assert!(size.parse::<u64>().is_ok(), "{size}");
    ok(&format!(
        "getfattr -n user.vm0.message {}",
        q(&volumes.join(format!("configs@/{}", names[1])))
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&volumes.join("configs@latest")),
        q(&volumes.join("configs"))
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&volumes.join(format!("configs@/{}", names[1]))),
        q(&volumes.join(format!("configs@{}", names[1])))
    ));
    // `ls -l volumes` shows the head's size without downloading anything.
    let blobs = emulator.stats()["blob_requests"].as_u64().unwrap();
    let long = ok(&format!("ls -l {}", q(&volumes)));
    let expected = ok(&format!(
        "getfattr --only-values -n user.vm0.size {}",
        q(&volumes.join("configs"))
    ));
    assert!(
        long.lines()
            .any(|l| l.ends_with(" configs") && l.contains(&format!(" {expected} "))),
        "{long}"
    );
    assert_eq!(emulator.stats()["blob_requests"].as_u64().unwrap(), blobs);
}

#[test]
fn a_python_open_loop_leaves_no_ioctl_or_lseek_warnings_in_the_log() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let script = r#"
import os, sys
root = sys.argv[1]
for _ in range(20):
    for name in ("runs/latest/status", "volumes/input-data/README.md", "agents/coder/agent.json"):
        with open(os.path.join(root, name)) as f:
            f.read()
with open(os.path.join(root, "volumes/input-data/README.md"), "rb") as f:
    size = os.fstat(f.fileno()).st_size
    assert os.lseek(f.fileno(), 0, os.SEEK_DATA) == 0
    assert os.lseek(f.fileno(), 0, os.SEEK_HOLE) == size
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mount.mountpoint())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    let log = mount.stderr();
    assert!(!log.contains("Not Implemented"), "{log}");
    assert!(!log.contains("ioctl"), "{log}");
}

#[test]
fn df_shows_the_cache_and_ls_a_shows_dot_and_dot_dot() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--cache-size", "1G"]);
    let df = ok(&format!(
        "df -B1 --output=size,used {}",
        q(mount.mountpoint())
    ));
    let sizes: Vec<u64> = df
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(sizes, vec![1 << 30, 0], "{df}");
    ok(&format!(
        "cat {} >/dev/null",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    mount.wait_for_downloads();
    let df = ok(&format!("df -B1 --output=used {}", q(mount.mountpoint())));
    let used: u64 = df
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap();
    assert!(used > 0, "{df}");
    for dir in ["", "runs", "volumes/input-data"] {
        let listed = ok(&format!("ls -a {}", q(&mount.path(dir))));
        let names: Vec<&str> = listed.lines().collect();
        assert_eq!(&names[..2], [".", ".."], "ls -a {dir}: {listed}");
    }
}

#[test]
fn an_archive_larger_than_the_limit_is_refused_before_its_download() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--max-archive-size", "1K"]);
    let out = sh(&format!(
        "cat {}",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{out:?}"
    );
    assert_eq!(emulator.stats()["blob_requests"], 0);
    assert!(mount.logged("--max-archive-size"), "{}", mount.stderr());
    let log = mount.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("--max-archive-size"))
        .unwrap_or_else(|| panic!("the log says why:\n{log}"));
    assert!(line.contains("volumes/input-data@"), "{line}");
    assert!(
        line.contains("1024 bytes") && line.contains("307492 bytes"),
        "{line}"
    );
    assert!(!log.contains("(os error"), "{log}");
}

#[test]
fn pin_works_on_a_read_only_mount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--read-only"]);
    let out = vm0fs()
        .args(["prefetch", "--pin"])
        .arg(mount.path("volumes/input-data"))
        .output()
        .expect("run vm0fs prefetch");
    assert!(out.status.success(), "{out:?}");
    let pins = std::fs::read_to_string(mount.path(".vm0fs/pins")).unwrap();
    let head = ok(&format!(
        "getfattr --only-values -n user.vm0.version {}",
        q(&mount.path("volumes/input-data"))
    ));
    assert_eq!(pins.trim(), head);
    let out = sh(&format!("echo hi > {}", q(&mount.path("runs/new/coder"))));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
}

#[test]
fn help_and_man_describe_the_tree() {
    let help = vm0fs().arg("--help").output().unwrap();
    let man = vm0fs().arg("man").output().unwrap();
    for text in [&help.stdout, &man.stdout] {
        let text = String::from_utf8_lossy(text);
        for piece in [
            "runs/new/<agent>",
            "ctl",
            "@latest",
            "user.vm0.size",
            ".vm0fs/",
            "vm0fs wait",
        ] {
            assert!(text.contains(piece), "{piece} missing from:\n{text}");
        }
    }
}

#[test]
fn the_first_listing_of_runs_streams_its_entries_as_pages_arrive() {
    let emulator = Emulator::start(&[]);
    let (status, body) = emulator.post_json("/_control/generate/runs?count=10000", &Value::Null);
    assert_eq!(status, 200, "{body}");
    let mount = Mount::start(&emulator, &[]);
    // A second a page: the whole listing takes 100 s; its first entries must not wait for that.
    emulator.set_faults(serde_json::json!({"latency_ms": 1000}));
    let before = requests(&emulator);
    let mut ls = Command::new("ls")
        .arg("-f")
        .arg(mount.path("runs"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start ls");
    let stdout = ls.stdout.take().unwrap();
    let first: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .take(150)
        .map(Result::unwrap)
        .collect();
    let asked = requests(&emulator) - before;
    // SAFETY: kill(2) on the PID of our own child, not yet reaped.
    unsafe { libc::kill(ls.id() as i32, libc::SIGTERM) };
    let _ = ls.wait();
    assert_eq!(first.len(), 150, "{first:?}");
    assert!(first.contains(&"new".to_string()) && first.contains(&"latest".to_string()));
    assert!(
        asked < 50,
        "the first entries came after {asked} of the 100 pages; they must not wait for the last"
    );
}
