//! What the kernel says about a process and the machine: RSS and CPU from
//! `/proc/<pid>/{status,stat,io}`, listen-queue overflows from `/proc/net/netstat`, the
//! open-file limit, TCP segment counts (`ss`), and the machine description the report
//! prints.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One reading of a process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// User plus system CPU time.
    pub cpu_secs: f64,
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Reads `/proc/<pid>`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let ticks = clock_ticks();
    let (utime, stime) = parse_stat_times(&stat)?;
    Ok(ProcSample {
        rss_kib: status_field_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: status_field_kib(&status, "VmHWM").unwrap_or(0),
        cpu_secs: (utime + stime) as f64 / ticks as f64,
        threads: keyed_u64(&status, "Threads").unwrap_or(0),
        fds,
    })
}

/// Clock ticks per second, the unit of `utime`/`stime`.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// `utime` and `stime` (fields 14 and 15) of `/proc/<pid>/stat`. The command name in
/// field 2 may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_times(stat: &str) -> Result<(u64, u64)> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("no ')' in stat line"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state), so field n is fields[n - 3].
    let get = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("stat line too short"))?
            .parse::<u64>()
            .with_context(|| format!("stat field {n}"))
    };
    Ok((get(14)?, get(15)?))
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in KiB.
pub fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    keyed_u64(status, key)
}

/// The first number after `key:` on the line that starts with it.
pub fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `TcpExt` counters of `/proc/net/netstat`: a header line of names, then a line of values.
pub fn tcp_ext(netstat: &str) -> Vec<(String, u64)> {
    let mut lines = netstat.lines();
    while let Some(names) = lines.next() {
        let Some(values) = lines.next() else { break };
        if let (Some(n), Some(v)) = (
            names.strip_prefix("TcpExt:"),
            values.strip_prefix("TcpExt:"),
        ) {
            return n
                .split_whitespace()
                .zip(v.split_whitespace())
                .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
                .collect();
        }
    }
    Vec::new()
}

/// Listen-queue overflows and drops so far (system-wide; the bench is the only load).
pub fn listen_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    tcp_ext(&text)
        .into_iter()
        .filter(|(n, _)| n == "ListenOverflows" || n == "ListenDrops")
        .map(|(_, v)| v)
        .sum()
}

/// Data segments each peer has sent to the local TCP port `port` (the kernel's
/// `data_segs_in` of every established socket on that port, as `ss -ti` shows it), by
/// the peer's port. On loopback a write of up to one MSS (32 KiB and more) is one
/// segment, so this counts a client's writes: its round trips. Empty without `ss`.
pub fn data_segs_in(port: u16) -> BTreeMap<u16, u64> {
    let filter = format!("( sport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .output();
    match out {
        Ok(o) if o.status.success() => parse_ss(&String::from_utf8_lossy(&o.stdout)),
        _ => BTreeMap::new(),
    }
}

/// `ss -tinH` output: a line per socket (`recv-q send-q local peer`), then an indented
/// line of its TCP info.
pub fn parse_ss(text: &str) -> BTreeMap<u16, u64> {
    let mut out = BTreeMap::new();
    let mut peer: Option<u16> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            peer = line
                .split_whitespace()
                .nth(3)
                .and_then(|p| p.rsplit(':').next()?.parse().ok());
        } else if let Some(p) = peer.take() {
            if let Some(n) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("data_segs_in:")?.parse().ok())
            {
                out.insert(p, n);
            }
        }
    }
    out
}

/// Raises this process's open-file soft limit to the hard limit (children inherit it)
/// and returns `(soft, hard)` after the change.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// The machine, as the report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub os: String,
    pub kernel: String,
    pub nofile_hard: u64,
    pub somaxconn: String,
    pub port_range: String,
    pub rustc: String,
    pub redis: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|s| s.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib = keyed_u64(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_gib: mem_kib as f64 / (1024.0 * 1024.0),
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            nofile_hard: raise_nofile().1,
            somaxconn: read("/proc/sys/net/core/somaxconn").trim().to_string(),
            port_range: read("/proc/sys/net/ipv4/ip_local_port_range")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("-"),
            rustc: command_line("rustc", &["--version"]),
            redis: command_line("redis-server", &["--version"]),
        }
    }
}

/// First line of a command's output, or "unavailable".
fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unavailable".into())
}

/// The 1-minute load average: how busy the shared machine was around a run.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPU percent of one core over an interval.
pub fn cpu_percent(before: &ProcSample, after: &ProcSample, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    100.0 * (after.cpu_secs - before.cpu_secs) / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_skip_odd_command_names() {
        let line = "1234 (herenow (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    17 5 0 0 20 0 3 0 100 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_times(line).unwrap(), (17, 5));
        assert!(parse_stat_times("garbage").is_err());
    }

    #[test]
    fn status_fields() {
        let status = "Name:\therenow\nVmHWM:\t   9000 kB\nVmRSS:\t   8123 kB\nThreads:\t3\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(8123));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(9000));
        assert_eq!(keyed_u64(status, "Threads"), Some(3));
        assert_eq!(keyed_u64(status, "VmSwap"), None);
        let io = "rchar: 10\nwchar: 2048\n";
        assert_eq!(keyed_u64(io, "wchar"), Some(2048));
    }

    #[test]
    fn netstat_tcp_ext() {
        let t = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 3 4\n\
                 IpExt: InNoRoutes\nIpExt: 0\n";
        let v = tcp_ext(t);
        assert_eq!(v[1], ("ListenOverflows".to_string(), 3));
        assert_eq!(v[2].1, 4);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.threads >= 1 && s.fds > 0);
        assert!(cpu_percent(&s, &s, Duration::from_secs(1)) == 0.0);
    }

    #[test]
    fn ss_lines() {
        let t = "0      0      127.0.0.1:6399 127.0.0.1:43004\n\t bbr wscale:10,10 rto:204 \
                 segs_out:2 segs_in:4 data_segs_out:1 data_segs_in:7 bbr:(bw:1bps)\n\
                 0      0      127.0.0.1:6399 127.0.0.1:43010\n\t cubic data_segs_in:3\n";
        let m = parse_ss(t);
        assert_eq!(m.get(&43004), Some(&7));
        assert_eq!(m.get(&43010), Some(&3));
    }
}
