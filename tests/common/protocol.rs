//! The two upload protocols a server may speak (CONTRACT.md 7.1 and 7.2), so that the tests that publish run
//! against both: `Protocol::Push` starts the emulator with `--no-v1-upload`, which leaves the push flow the only
//! way to publish, as on the platform after 2026-01-10.

use super::emulator::Emulator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The `/v1` three-step upload.
    V1,
    /// The storage push flow.
    Push,
}

impl Protocol {
    /// An emulator that speaks this protocol, with `args` besides.
    pub fn emulator(self, args: &[&str]) -> Emulator {
        let mut all = args.to_vec();
        if self == Protocol::Push {
            all.push("--no-v1-upload");
        }
        Emulator::start(&all)
    }
}

/// For each `name(Protocol)` given, a `#[test]` per protocol: `v1::name` and `push::name`.
#[macro_export]
macro_rules! both_protocols {
    ($($name:ident),* $(,)?) => {
        mod v1 {
            $( #[test] fn $name() { super::$name($crate::common::protocol::Protocol::V1) } )*
        }
        mod push {
            $( #[test] fn $name() { super::$name($crate::common::protocol::Protocol::Push) } )*
        }
    };
}
