//! The namespace of `agents/`: one directory per agent, holding `agent.json` and `versions.json` rendered from
//! the API. Read-only; an agent's files may change whenever the agent does, so they are kept for a second only.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{FIXED_TTL, is_a_directory, not_a_directory, unique_safe_names};
use super::{MOVING_TTL, Namespace, file_by_name, missing, name_of_file, text_name, time_of};
use crate::fs::error::Result;
use crate::fs::handles::Handle;
use crate::fs::inodes::Node;
use crate::fs::render;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};

const AGENT_FILES: [(&str, AgentFile); 2] = [
    ("agent.json", AgentFile::AgentJson),
    ("versions.json", AgentFile::VersionsJson),
];

/// The files of an agent's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentFile {
    AgentJson,
    VersionsJson,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentNode {
    /// `agents/`.
    Dir,
    Agent {
        name: String,
    },
    File {
        name: String,
        file: AgentFile,
    },
}

impl AgentNode {
    /// The bytes of an agent's file, and its mtime.
    fn content(&self, fs: &Vm0Fs) -> Result<(Vec<u8>, std::time::SystemTime)> {
        let AgentNode::File { name, file } = self else {
            return Err(is_a_directory(self));
        };
        let agent = fs.meta.agent(name)?;
        let bytes = match file {
            AgentFile::AgentJson => render::json(&agent),
            AgentFile::VersionsJson => render::json(&*fs.meta.agent_versions(&agent.id)?),
        };
        Ok((bytes, time_of(&agent.updated_at, fs.mounted_at)))
    }
}

impl Namespace for AgentNode {
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        let parent = Node::Agents(self.clone());
        let text = text_name(&parent, name)?;
        Ok(Node::Agents(match self {
            AgentNode::Dir => {
                fs.meta.agent(text)?;
                AgentNode::Agent {
                    name: text.to_string(),
                }
            }
            AgentNode::Agent { name: agent } => AgentNode::File {
                name: agent.clone(),
                file: file_by_name(&AGENT_FILES, text).ok_or_else(|| missing(&parent, name))?,
            },
            AgentNode::File { .. } => return Err(not_a_directory(self)),
        }))
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        match self {
            AgentNode::Dir => {
                Ok(fs.dir_attr(ino, fs.mounted_at, fs.config.metadata_ttl.min(FIXED_TTL)))
            }
            AgentNode::Agent { name } => {
                let agent = fs.meta.agent(name)?;
                let mtime = time_of(&agent.updated_at, fs.mounted_at);
                Ok(fs.dir_attr(ino, mtime, fs.config.metadata_ttl))
            }
            AgentNode::File { .. } => {
                let (content, mtime) = self.content(fs)?;
                Ok(fs.file_attr(ino, content.len() as u64, mtime, MOVING_TTL))
            }
        }
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        match self {
            AgentNode::Dir => {
                let agents = fs.meta.agents()?;
                for name in unique_safe_names("agent", agents.iter().map(|a| a.name.as_str())) {
                    let child = Node::Agents(AgentNode::Agent {
                        name: name.to_string(),
                    });
                    out.push(fs.entry(&child, FileKind::Directory, name));
                }
            }
            AgentNode::Agent { name } => {
                for (file_name, file) in AGENT_FILES {
                    let child = Node::Agents(AgentNode::File {
                        name: name.clone(),
                        file,
                    });
                    out.push(fs.entry(&child, FileKind::File, file_name));
                }
            }
            AgentNode::File { .. } => return Err(not_a_directory(self)),
        }
        Ok(())
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        let (content, _) = self.content(fs)?;
        Ok(fs.open_handle(Handle::Content(Arc::new(content))))
    }

    fn parent(&self) -> Node {
        match self {
            AgentNode::Dir => Node::Root,
            AgentNode::Agent { .. } => Node::Agents(AgentNode::Dir),
            AgentNode::File { name, .. } => Node::Agents(AgentNode::Agent { name: name.clone() }),
        }
    }

    fn describe(&self) -> String {
        match self {
            AgentNode::Dir => "agents".into(),
            AgentNode::Agent { name } => format!("agents/{name}"),
            AgentNode::File { name, file } => {
                format!("agents/{name}/{}", name_of_file(&AGENT_FILES, *file))
            }
        }
    }

    fn xattrs(&self, fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        Ok(match self {
            AgentNode::Agent { name } => vec![("user.vm0.id", fs.meta.agent(name)?.id)],
            _ => Vec::new(),
        })
    }
}
