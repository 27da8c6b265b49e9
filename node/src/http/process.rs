//! Process figures for `/metrics`, read from `/proc/self` at scrape time (Linux; elsewhere
//! the figures stay at zero). No dependency: three small files.

/// What one scrape reads.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
}

/// Reads the current process's figures; a file that cannot be read leaves its figure at 0.
pub fn sample() -> Sample {
    Sample {
        rss_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_from_status(&s))
            .unwrap_or(0),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        cpu_seconds: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_from_stat(&s))
            .unwrap_or(0.0),
    }
}

/// `VmRSS:   1234 kB` in `/proc/self/status`, in bytes.
fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// utime + stime (fields 14 and 15) of `/proc/self/stat`, in seconds. The fields are in
/// USER_HZ ticks, which Linux fixes at 100 for user space on every architecture.
fn cpu_from_stat(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3, so utime (14) is its 12th field.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat_lines() {
        assert_eq!(
            rss_from_status("Name:\toffgrid\nVmRSS:\t   2048 kB\nThreads: 4\n"),
            Some(2048 * 1024)
        );
        assert_eq!(rss_from_status("Name: x\n"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        assert_eq!(cpu_from_stat(stat), Some(3.0));
        assert_eq!(cpu_from_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let s = sample();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(s.rss_bytes > 0, "{s:?}");
            assert!(s.open_fds >= 3, "{s:?}");
        }
    }
}
