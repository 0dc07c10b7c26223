//! The local VM0 API emulator (placeholder until the emulator module lands).
