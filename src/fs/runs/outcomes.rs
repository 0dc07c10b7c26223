//! Who reads which outcome of `runs/new/<agent>`: each writer gets the run it started, however many write at once.
//!
//! A script writes the prompt and reads the file back (`printf 'job\n' > runs/new/coder; cat runs/new/coder`),
//! so the outcome has to reach a different open, often a different process, with no extra step; and eight jobs or
//! threads doing that at once on one agent must each read their own run. The kernel tells every request which
//! thread made it, so an outcome is kept with the identity of the process that wrote the prompt, and a read is
//! answered with the newest outcome of the nearest relative of the reader, nearest first:
//!
//! 1. the same thread (Python threads, each writing and reading);
//! 2. the same process (a shell's builtin `printf > f` then `read < f`);
//! 3. a descendant of the reader (a program that runs `sh -c "printf … | tee f"`, then reads `f` itself);
//! 4. an ancestor of the reader (`printf > f` by the shell, then `cat f`, a child of that shell);
//! 5. a sibling, the writer and the reader having one parent (`tee f`, then `cat f`, in one shell);
//! 6. where none of those wrote, the newest writer of the reader's Unix session (`getsid`) with the reader's uid:
//!    the more distant relatives a shell makes (`(echo p | tee f); cat f`, where `tee` is `cat`'s nephew, or
//!    `timeout 20 sh -c 'echo p > f'; timeout 10 cat f`, cousins) are all in the session of the terminal or
//!    script that ran them, and a run id read back empty would make a retry start a duplicate run. In a container
//!    whose session leader is outside its pid namespace, the kernel shows the session as 0 to every process
//!    started from outside; those are taken as one session (the one the container's runtime made).
//!
//! Where nobody of the reader's session wrote, there is no outcome to show and the open fails with `ENOENT`
//! (logged), rather than giving an empty file that reads as "started, no id". Processes are told apart by pid and
//! start time, so a pid reused later is not a relative; init (pid 1) is nobody's relative. What this cannot
//! know: an editor started from a shell that just started a run through the same file reads that run's id (it
//! descends from the writer, like `cat`); writers of another session (another terminal, a `setsid` job, another
//! user) never show in it. The open file itself also gives its own outcome: reading back through the descriptor
//! that wrote (opened read-write) starts the run at that read and answers its id. An outcome is kept until the
//! mount ends or `KEPT` newer ones push it out.

use crate::sync::Locked;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many outcomes are kept, newest last.
const KEPT: usize = 4096;

/// A process as it was when seen: its pid and its start time (in clock ticks since boot), so that a reused pid is
/// another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pid: u32,
    start: u64,
}

/// The thread that made a request, its process and that process's ancestors, parent first, up to (not
/// including) init; and the process's session and real uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    thread: u32,
    process: ProcId,
    ancestors: Vec<ProcId>,
    /// The session id (`getsid`); a pid is not reused while a session of that id lives. It is 0 for a process
    /// whose session leader lives outside vm0fs's pid namespace (everything a container's runtime starts, such
    /// as `docker exec` and CI jobs): those processes count as one session, as they would from outside.
    session: u32,
    uid: u32,
}

/// Ancestors looked at, at most: a deeper tree is cut there, so that a write never walks far.
const MOST_ANCESTORS: usize = 32;

impl Caller {
    /// The caller whose thread id the kernel gave, read from `/proc`; `None` when it is gone already.
    pub fn of_thread(tid: u32) -> Option<Caller> {
        let (tgid, mut ppid) = (status_field(tid, "Tgid:")?, status_field(tid, "PPid:")?);
        let mut ancestors = Vec::new();
        while ppid > 1 && ancestors.len() < MOST_ANCESTORS {
            let Some(ancestor) = proc_id(ppid) else { break };
            ancestors.push(ancestor);
            ppid = status_field(ppid, "PPid:").unwrap_or(0);
        }
        let (process, session) = proc_id_and_session(tgid)?;
        Some(Caller {
            thread: tid,
            process,
            ancestors,
            session,
            uid: status_field(tgid, "Uid:")?,
        })
    }

    fn parent(&self) -> Option<ProcId> {
        self.ancestors.first().copied()
    }
}

/// The first number of a field of `/proc/<pid>/status` (`Tgid:`, `PPid:`, `Uid:`, whose first is the real uid).
fn status_field(pid: u32, key: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A process's pid and start time, from `/proc/<pid>/stat`.
fn proc_id(pid: u32) -> Option<ProcId> {
    proc_id_and_session(pid).map(|(id, _)| id)
}

/// A process's pid and start time, and its session id, from `/proc/<pid>/stat` (fields 22 and 6, counted after
/// the parenthesised name, which may hold spaces).
fn proc_id_and_session(pid: u32) -> Option<(ProcId, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let start = fields.get(19)?.parse().ok()?;
    let session = fields.get(3)?.parse().ok()?;
    Some((ProcId { pid, start }, session))
}

struct Outcome {
    agent: String,
    writer: Caller,
    shown: Vec<u8>,
}

/// The outcomes of `runs/new/<agent>` writes, newest last.
pub struct Outcomes {
    kept: Mutex<VecDeque<Outcome>>,
}

impl Outcomes {
    pub fn new() -> Self {
        Outcomes {
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps what `writer`'s write to `runs/new/<agent>` came to (a run id, an error, or nothing).
    pub fn record(&self, agent: &str, writer: Caller, shown: Vec<u8>) {
        let mut kept = self.kept.locked();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(Outcome {
            agent: agent.to_string(),
            writer,
            shown,
        });
    }

    /// What `reader` reads in `runs/new/<agent>`: the newest outcome of its nearest relative, else of its session;
    /// `None` when neither wrote.
    pub fn for_reader(&self, agent: &str, reader: Option<Caller>) -> Option<Vec<u8>> {
        let reader = reader.as_ref()?;
        let kept = self.kept.locked();
        let relations: [&dyn Fn(&Caller) -> bool; 6] = [
            &|w| w.thread == reader.thread && w.process == reader.process,
            &|w| w.process == reader.process,
            &|w| w.ancestors.contains(&reader.process),
            &|w| reader.ancestors.contains(&w.process),
            &|w| w.parent().is_some() && w.parent() == reader.parent(),
            &|w| w.session == reader.session && w.uid == reader.uid,
        ];
        relations
            .iter()
            .find_map(|related| {
                kept.iter()
                    .rev()
                    .find(|o| o.agent == agent && related(&o.writer))
            })
            .map(|o| o.shown.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller whose process has `parent`; every process here descends from 5 (a script) and is in its
    /// session, but for the children of 2 (a stranger's terminal, another session) and 5 itself.
    fn caller(thread: u32, process: u32, parent: u32) -> Caller {
        let id = |pid| ProcId { pid, start: 1 };
        let ancestors = match parent {
            0 => Vec::new(),
            2 | 5 => vec![id(parent)],
            _ => vec![id(parent), id(5)],
        };
        Caller {
            thread,
            process: id(process),
            ancestors,
            session: if process == 2 || parent == 2 { 2 } else { 5 },
            uid: 1000,
        }
    }

    #[test]
    fn each_reader_gets_its_nearest_relatives_newest_outcome() {
        let outcomes = Outcomes::new();
        // Two shell jobs (processes 10 and 20, children of the script, 5) write; thread 31 of process 30 writes.
        outcomes.record("coder", caller(10, 10, 5), b"job-a\n".to_vec());
        outcomes.record("coder", caller(20, 20, 5), b"job-b\n".to_vec());
        outcomes.record("coder", caller(31, 30, 5), b"thread-31\n".to_vec());
        outcomes.record("coder", caller(32, 30, 5), b"thread-32\n".to_vec());
        // `cat`, a child of job 10, reads job a's run, not the newer ones.
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(11, 11, 10))),
            Some(b"job-a\n".to_vec())
        );
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(21, 21, 20))),
            Some(b"job-b\n".to_vec())
        );
        // Each thread its own.
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(31, 30, 5))),
            Some(b"thread-31\n".to_vec())
        );
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(32, 30, 5))),
            Some(b"thread-32\n".to_vec())
        );
        // A grandchild of job a reads job a's run.
        let mut grandchild = caller(12, 12, 11);
        grandchild.ancestors.push(ProcId { pid: 10, start: 1 });
        assert_eq!(
            outcomes.for_reader("coder", Some(grandchild)),
            Some(b"job-a\n".to_vec())
        );
        // The script reads its descendants' newest.
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(5, 5, 0))),
            Some(b"thread-32\n".to_vec())
        );
        // A sibling of the writers reads the newest; another agent's file and strangers read nothing.
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(40, 40, 5))),
            Some(b"thread-32\n".to_vec())
        );
        assert!(
            outcomes
                .for_reader("reviewer", Some(caller(11, 11, 10)))
                .is_none()
        );
        assert!(
            outcomes
                .for_reader("coder", Some(caller(50, 50, 2)))
                .is_none()
        );
        assert!(outcomes.for_reader("coder", None).is_none());
    }

    #[test]
    fn a_reused_pid_is_not_the_writer() {
        let outcomes = Outcomes::new();
        outcomes.record("coder", caller(10, 10, 1), b"old\n".to_vec());
        let mut reused = caller(10, 10, 2);
        reused.process.start = 99;
        assert!(outcomes.for_reader("coder", Some(reused)).is_none());
    }

    #[test]
    fn this_process_is_found_in_proc() {
        let me = Caller::of_thread(std::process::id()).unwrap();
        assert_eq!(me.process.pid, std::process::id());
        assert!(me.process.start > 0);
    }

    /// `(echo p | tee f); cat f`: `tee` is `cat`'s nephew, no relative the rules 1 to 5 reach, but they share the
    /// script's session; a process of another session, or of another user in it, reads nothing.
    #[test]
    fn a_distant_relative_in_the_readers_session_is_found_and_other_sessions_are_not() {
        let outcomes = Outcomes::new();
        let mut nephew = caller(12, 12, 11);
        nephew.ancestors.push(ProcId { pid: 10, start: 1 });
        outcomes.record("coder", nephew, b"run-1\n".to_vec());
        outcomes.record("coder", caller(51, 51, 2), b"stranger\n".to_vec());
        assert_eq!(
            outcomes.for_reader("coder", Some(caller(20, 20, 5))),
            Some(b"run-1\n".to_vec())
        );
        let mut other_user = caller(20, 20, 5);
        other_user.uid = 1001;
        assert!(outcomes.for_reader("coder", Some(other_user)).is_none());
        let mut other_session = caller(20, 20, 5);
        other_session.session = 77;
        assert!(outcomes.for_reader("coder", Some(other_session)).is_none());
    }

    /// In a container whose session leader is outside its pid namespace, `/proc` shows session 0 to the writer
    /// and the reader alike (CI's jobs): they are one session, as seen from outside.
    #[test]
    fn a_session_outside_the_pid_namespace_is_one_session() {
        let outcomes = Outcomes::new();
        let mut nephew = caller(12, 12, 11);
        nephew.session = 0;
        outcomes.record("coder", nephew, b"run-1\n".to_vec());
        let mut reader = caller(20, 20, 5);
        reader.session = 0;
        assert_eq!(
            outcomes.for_reader("coder", Some(reader)),
            Some(b"run-1\n".to_vec())
        );
        assert!(
            outcomes
                .for_reader("coder", Some(caller(20, 20, 5)))
                .is_none()
        );
    }

    #[test]
    fn this_process_session_and_uid_are_read_from_proc() {
        let me = Caller::of_thread(std::process::id()).unwrap();
        // SAFETY: getsid(0) and getuid() touch no memory.
        let (session, uid) = unsafe { (libc::getsid(0), libc::getuid()) };
        assert_eq!(me.session, session as u32);
        assert_eq!(me.uid, uid);
    }
}
