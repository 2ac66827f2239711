//! The report of `shmkit bench`: percentiles and medians over the rounds, ratios against
//! the baselines measured in the same run, the table, `results.json` and `chart.svg`.

use super::*;

struct Row {
    case: Case,
    p50: f64,
    p99: f64,
    p999: f64,
    msgs_per_s: f64,
    bytes_per_s: f64,
    /// Throughput: bytes per second in each round, in the order the rounds ran.
    round_bytes_per_s: Vec<f64>,
}

pub(super) struct Report {
    rows: Vec<Row>,
    rounds: usize,
    cpus: usize,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

/// Row `r`'s throughput against `base`'s: the median of the rounds' ratios (every case
/// runs once a round, so the rounds line up; see `python::round_ratios`).
fn throughput_ratio(r: &Row, base: &Row) -> f64 {
    super::python::paired(&r.round_bytes_per_s, &base.round_bytes_per_s)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Report {
    pub(super) fn new(cases: &[Case], samples: &[Samples], plan: &Plan, cpus: usize) -> Report {
        let rows = cases
            .iter()
            .zip(samples)
            .map(|(case, s)| {
                let mut rtt = s.rtt_ns.clone();
                rtt.sort_unstable();
                Row {
                    case: *case,
                    p50: percentile(&rtt, 0.5),
                    p99: percentile(&rtt, 0.99),
                    p999: percentile(&rtt, 0.999),
                    msgs_per_s: median(s.rounds.iter().map(|r| r.0 as f64 / r.2).collect()),
                    bytes_per_s: median(s.rounds.iter().map(|r| r.1 as f64 / r.2).collect()),
                    round_bytes_per_s: s.rounds.iter().map(|r| r.1 as f64 / r.2).collect(),
                }
            })
            .collect();
        Report {
            rows,
            rounds: plan.rounds,
            cpus,
        }
    }

    fn find(&self, id: &str, size: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.case.id == id && r.case.size == size)
    }

    /// The rows of the cases that measure `m`, in the order they ran.
    fn measuring(&self, m: Measure) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |r| r.case.measure == m)
    }

    /// The row of the baseline case `id` (a row's pipe or floor, if it has one) for `size`.
    fn baseline(&self, id: Option<&str>, size: usize) -> Option<&Row> {
        id.and_then(|id| self.find(id, size))
    }

    pub(super) fn table(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "shmkit bench: {} interleaved rounds, {} CPUs{}\n\n",
            self.rounds,
            self.cpus,
            if self.cpus > 1 {
                ", pinned to CPUs 0 and 1"
            } else {
                " (not pinned)"
            }
        );
        s += "Round trip, 8-byte request and reply (ns)\n";
        s += &format!(
            "{:<38} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "case", "p50", "p99", "p99.9", "vs pipe", "vs floor"
        );
        let ns = |x: f64| {
            if x.is_finite() {
                format!("{x:.0}")
            } else {
                "n/a".into()
            }
        };
        for r in self.measuring(Measure::RoundTrip) {
            let vs = |other| {
                self.baseline(other, 8)
                    .filter(|o| o.p50.is_finite() && r.p50.is_finite())
                    .map_or("".to_string(), |o| format!("{:.2}x", r.p50 / o.p50))
            };
            s += &format!(
                "{:<38} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                r.case.label,
                ns(r.p50),
                ns(r.p99),
                ns(r.p999),
                vs(r.case.pipe),
                vs(r.case.floor)
            );
        }
        if let Some(floor) = self.find("rt_floor_spin", 8) {
            if floor.p50.is_nan() || floor.p50 >= 5_000.0 {
                s += "warning: the cache-line floor is above 5 us or could not be measured: the host is\n\
                      time-slicing our two CPUs onto one core, so spinning costs a time slice per hand-off.\n\
                      Busy-poll numbers from this run are not meaningful; run again later.\n";
            }
        }
        s += "\nOne-way throughput (median of rounds; each ratio the median of the rounds' ratios)\n";
        s += &format!(
            "{:<30} {:>8} {:>12} {:>10} {:>9} {:>9}\n",
            "case", "size", "msgs/s", "GB/s", "vs pipe", "vs floor"
        );
        for r in self.measuring(Measure::Throughput) {
            let vs = |other, digits: usize| {
                self.baseline(other, r.case.size)
                    .map_or("".to_string(), |o| {
                        format!("{:.digits$}x", throughput_ratio(r, o))
                    })
            };
            s += &format!(
                "{:<30} {:>8} {:>12.0} {:>10.3} {:>9} {:>9}\n",
                r.case.label,
                human(r.case.size),
                r.msgs_per_s,
                r.bytes_per_s / 1e9,
                vs(r.case.pipe, 1),
                vs(r.case.floor, 2)
            );
        }
        s
    }

    pub(super) fn json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                let num = |x: f64| if x.is_finite() { format!("{x:.1}") } else { "null".into() };
                format!(
                    "{{\"case\":{:?},\"label\":{:?},\"size\":{},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"msgs_per_s\":{},\"bytes_per_s\":{}}}",
                    r.case.id,
                    r.case.label,
                    r.case.size,
                    num(r.p50),
                    num(r.p99),
                    num(r.p999),
                    num(r.msgs_per_s),
                    num(r.bytes_per_s)
                )
            })
            .collect();
        format!(
            "{{\"rounds\":{},\"cpus\":{},\"results\":[{}]}}\n",
            self.rounds,
            self.cpus,
            rows.join(",")
        )
    }

    /// Two bar charts: round-trip p50 (log scale) and throughput by size (log scale).
    pub(super) fn svg(&self) -> String {
        let (w, h) = (900.0, 880.0);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        // Panel 1: round trips.
        s += "<text x=\"20\" y=\"24\" font-size=\"16\">Round trip p50, 8 bytes (ns, log scale; shorter is better)</text>\n";
        let rts: Vec<&Row> = self
            .measuring(Measure::RoundTrip)
            .filter(|r| r.p50.is_finite())
            .collect();
        let max = rts.iter().map(|r| r.p50).fold(1.0, f64::max).log10().ceil();
        for (i, r) in rts.iter().enumerate() {
            let y = 40.0 + i as f64 * 26.0;
            let len = (r.p50.max(1.0).log10() / max) * 520.0;
            let color = if r.case.label.starts_with("shmkit") {
                "#2a7ab9"
            } else if r.case.label.starts_with("floor") {
                "#999999"
            } else {
                "#d9822b"
            };
            s += &format!(
                "<text x=\"20\" y=\"{:.0}\">{}</text><rect x=\"300\" y=\"{:.0}\" width=\"{len:.0}\" height=\"18\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"{:.0}\">{:.0} ns</text>\n",
                y + 13.0,
                xml(r.case.label),
                y,
                305.0 + len,
                y + 13.0,
                r.p50
            );
        }
        // Panel 2: throughput by size.
        let top = 60.0 + rts.len() as f64 * 26.0;
        s += &format!(
            "<text x=\"20\" y=\"{:.0}\" font-size=\"16\">One-way throughput by message size (GB/s, log scale; longer is better)</text>\n",
            top
        );
        let series = [
            ("tp_frames", "#2a7ab9", "shmkit frames"),
            ("tp_spsc", "#2a7ab9", "shmkit spsc"),
            ("tp_copy", "#999999", "floor: copy in, read in place"),
            ("tp_pipe", "#d9822b", "pipe"),
            ("tp_socket", "#8c5fb0", "unix socket"),
        ];
        let mut y = top + 16.0;
        let mut sizes: Vec<usize> = vec![8];
        sizes.extend(SIZES);
        for size in sizes {
            s += &format!(
                "<text x=\"20\" y=\"{:.0}\" font-weight=\"bold\">{}</text>\n",
                y + 13.0,
                human(size)
            );
            for (id, color, label) in series {
                let Some(r) = self.find(id, size) else {
                    continue;
                };
                if !r.bytes_per_s.is_finite() {
                    continue;
                }
                // log10 from 1 MB/s (0) to 100 GB/s (5).
                let v = (r.bytes_per_s / 1e6).max(1.0).log10();
                let len = v / 5.0 * 480.0;
                s += &format!(
                    "<text x=\"90\" y=\"{:.0}\">{label}</text><rect x=\"300\" y=\"{y:.0}\" width=\"{len:.0}\" height=\"16\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"{:.0}\">{:.3} GB/s</text>\n",
                    y + 12.0,
                    305.0 + len,
                    y + 12.0,
                    r.bytes_per_s / 1e9
                );
                y += 20.0;
            }
            y += 6.0;
        }
        s += "</svg>\n";
        s
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}
