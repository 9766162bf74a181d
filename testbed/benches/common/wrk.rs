//! wrk over loopback: one run, parsed, with the server's CPU time per
//! request.

use std::process::Command;

/// What a wrk run puts on the server.
pub struct Load {
    pub threads: u64,
    pub connections: u64,
    pub seconds: u64,
}

/// Runs `wrk --latency` against `url` (with `header`, `name: value`), and
/// charges the CPU time process `pid` (`"self"` for this one) spent to the
/// requests.
pub fn run(wrk: &str, load: &Load, url: &str, header: Option<&str>, pid: &str) -> Run {
    let cpu_before = cpu_micros(pid);
    let mut command = Command::new(wrk);
    command
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency");
    if let Some(header) = header {
        command.arg("-H").arg(header);
    }
    let output = command.arg(url).output().expect("wrk runs");
    let cpu = cpu_micros(pid) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut run = parse_wrk(&text).unwrap_or_else(|| panic!("unreadable wrk output:\n{text}"));
    run.cpu_us = cpu / run.requests.max(1.0);
    run
}

pub struct Run {
    pub requests: f64,
    /// The server process's CPU time per request, in microseconds.
    pub cpu_us: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx responses and socket errors, if any.
    pub errors: String,
}

impl Run {
    /// One line of a round: the route's name, then its figures.
    pub fn line(&self, round: usize, name: &str) -> String {
        format!(
            "round {round} {name:<20} {:>10.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  server CPU {:>5.2} us/request{}",
            self.rps,
            self.p50_us,
            self.p99_us,
            self.cpu_us,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!("  ({})", self.errors)
            }
        )
    }
}

/// User plus system CPU time of process `pid` (`"self"` for this one) so
/// far, in microseconds (from /proc; 0 where there is none).
pub fn cpu_micros(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 here; the
    // kernel counts them in USER_HZ = 100 ticks a second.
    (ticks(11) + ticks(12)) * 10_000.0
}

fn parse_wrk(text: &str) -> Option<Run> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = Vec::new();
    let mut in_distribution = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && line.starts_with("50%") {
            p50 = line.split_whitespace().nth(1).and_then(micros);
        } else if in_distribution && line.starts_with("99%") {
            p99 = line.split_whitespace().nth(1).and_then(micros);
            in_distribution = false;
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            errors.push(line.to_owned());
        }
    }
    Some(Run {
        requests: requests?,
        cpu_us: 0.0,
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        errors: errors.join("; "),
    })
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in microseconds.
fn micros(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(number * scale)
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of `f` over the runs of `route`.
pub fn median_of(runs: &[(usize, Run)], route: usize, f: fn(&Run) -> f64) -> f64 {
    median(
        runs.iter()
            .filter(|(r, _)| *r == route)
            .map(|(_, run)| f(run))
            .collect(),
    )
}
