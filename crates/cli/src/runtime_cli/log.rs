//! Errors go to stderr and, with --log, to the log file in runc's text or JSON format (containerd's shim reads
//! the last JSON line to explain a failure).

use std::io::Write;
use std::path::Path;

pub struct Logger {
    file: Option<std::fs::File>,
    json: bool,
}

impl Logger {
    pub fn new(path: Option<&Path>, format: &str) -> Logger {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Logger {
            file,
            json: format == "json",
        }
    }

    pub fn error(&self, msg: &str) {
        eprintln!("berth-runtime: {msg}");
        if let Some(mut f) = self.file.as_ref() {
            let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
            let line = if self.json {
                serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
            } else {
                format!("time={time:?} level=error msg={msg:?}")
            };
            let _ = writeln!(f, "{line}");
        }
    }
}
