//! `vm0fs completions SHELL` and `vm0fs man`: shell completions and the man page, generated from the clap
//! definitions.
//!
//! Both are made at run time from the same `clap::Command` that parses the command line, so they can never
//! disagree with `--help` and a new subcommand or flag appears in them without anyone editing a script or a page.
//! The man page is one page, vm0fs(1), holding every subcommand with its synopsis and options (one `man vm0fs`
//! answers everything); `--out-dir` writes the conventional set instead: vm0fs.1 plus vm0fs-<command>.1.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;
use clap_mangen::Man;

#[derive(Args, Debug)]
#[command(
    after_help = "Install, e.g.: vm0fs completions bash > ~/.local/share/bash-completion/completions/vm0fs; \
vm0fs completions zsh > ~/.zfunc/_vm0fs; vm0fs completions fish > ~/.config/fish/completions/vm0fs.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: Shell,
}

#[derive(Args, Debug)]
#[command(after_help = "Read it with `vm0fs man | man -l -`, or install it: \
vm0fs man > ~/.local/share/man/man1/vm0fs.1")]
pub struct ManArgs {
    /// Write vm0fs.1 and one vm0fs-<command>.1 page per command into DIR instead of one page to stdout
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs, mut cli: clap::Command) -> i32 {
    let name = cli.get_name().to_string();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cli, name, &mut out);
    finish(out.flush(), "write the completion script")
}

pub fn man(args: &ManArgs, cli: clap::Command) -> i32 {
    match &args.out_dir {
        Some(dir) => finish(
            clap_mangen::generate_to(cli, dir),
            &format!("write the man pages into {}", dir.display()),
        ),
        None => {
            let mut out = std::io::stdout().lock();
            let result = render_one_page(cli, &mut out).and_then(|()| out.flush());
            finish(result, "write the man page")
        }
    }
}

/// vm0fs(1): the top-level page, then a section per subcommand with its synopsis, description and options.
fn render_one_page(mut cli: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    cli = cli.disable_help_subcommand(true);
    cli.build();
    let page = Man::new(cli.clone());
    page.render_title(out)?;
    // No hyphenation and a ragged right margin: flags such as --allow-other stay whole, as in git's pages.
    out.write_all(b".nh\n.ad l\n")?;
    out.write_all(&sections(&page, &cli, ".SH")?)?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_uppercase();
        writeln!(out, ".SH \"{name}\"")?;
        out.write_all(&sections(&Man::new(sub.clone()), sub, ".SS")?)?;
    }
    page.render_version_section(out)
}

/// A command's synopsis, description, options and notes (its after-help), headed by `heading` (`.SH` or `.SS`).
fn sections(page: &Man, cmd: &clap::Command, heading: &str) -> std::io::Result<Vec<u8>> {
    let mut roff = Vec::new();
    if heading == ".SH" {
        page.render_name_section(&mut roff)?;
    }
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    page.render_options_section(&mut roff)?;
    if cmd.get_after_help().is_some() {
        page.render_extra_section(&mut roff)?;
    }
    Ok(String::from_utf8_lossy(&roff)
        .lines()
        .map(|line| match line.strip_prefix(".SH ") {
            Some("EXTRA") => format!("{heading} NOTES\n"),
            Some(title) => format!("{heading} {title}\n"),
            None => format!("{line}\n"),
        })
        .collect::<String>()
        .into_bytes())
}

fn finish(result: std::io::Result<()>, what: &str) -> i32 {
    match result {
        Ok(()) => 0,
        // `vm0fs man | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("vm0fs: cannot {what}: {}", crate::errno::io_message(&e));
            1
        }
    }
}
