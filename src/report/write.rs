//! Writing the result file so that a crash, a full disk or a second Ctrl-C never leaves
//! half a JSON document behind: the reader sees the old file or the new one, whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::ProbeResult;

/// Writes `result` as pretty JSON (with a final newline) to `path`, atomically: the text
/// goes to a temporary file in the same directory (a rename is only atomic within one
/// file system), is flushed to disk, and is then renamed over `path`. On any error the
/// temporary file is removed and `path` is left as it was.
pub fn write_result_atomically(path: &Path, result: &ProbeResult) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(result).map_err(io::Error::other)?;
    json.push(b'\n');
    write_atomically(path, &json)
}

/// Replaces `path` with `bytes` atomically (see [`write_result_atomically`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path)?;
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // Make the rename itself durable. Directories cannot be opened this way on every
    // platform, and the file is complete either way, so a failure here is not an error.
    if let Some(dir) = directory_of(path) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// `.NAME.PID.tmp` next to `path`: hidden, and unique to this process, so two probes
/// writing the same file never share a temporary file.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the result path names no file")
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(temp_name))
}

fn directory_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::tests::sample;

    #[test]
    fn writes_whole_json_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        fs::write(&path, "old").unwrap();
        write_result_atomically(&path, &sample()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        let back: ProbeResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back.recommended_workers, Some(9));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["result.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a directory fails: the old "file" stays, no temp is left.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        assert!(write_result_atomically(&path, &sample()).is_err());
        assert!(path.join("inside").exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["taken"]);
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert_eq!(
            write_atomically(Path::new("/"), b"{}").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
