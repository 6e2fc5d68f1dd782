//! The log destination of `tendril exec`: lines go to standard output as
//! they come, and to `job.log` in the output directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::trellis::StreamType;

pub struct TerminalLog {
    file: Mutex<File>,
}

impl TerminalLog {
    pub fn create(path: &Path) -> std::io::Result<TerminalLog> {
        Ok(TerminalLog {
            file: Mutex::new(File::create(path)?),
        })
    }

    pub fn write(&self, stream: StreamType, line: &str) {
        let prefix = match stream {
            StreamType::Stdout => "",
            StreamType::Stderr => "stderr| ",
            StreamType::System => "",
        };
        let text = format!("{prefix}{line}\n");
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = file.write_all(text.as_bytes());
    }
}
