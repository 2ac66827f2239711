//! Rows measured against Python's `multiprocessing` in the same run: the scripts in
//! `scripts/python/` (run once per round, interleaved with ours), and the table that puts
//! both side by side with the median of the rounds, their spread and the ratio.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::Res;

/// One row: its label, unit, and whether more is better.
pub(super) struct Row {
    /// Its id, and Python's: a row `X+Y` is a variant of ours of the program of Python's
    /// row `X`, compared with that.
    pub(super) id: &'static str,
    pub(super) label: &'static str,
    pub(super) unit: &'static str,
    pub(super) higher_is_better: bool,
}

/// Whether `python3` runs; says so when it does not.
pub(super) fn available() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("python3 is not on the PATH: the Python multiprocessing rows are skipped");
    }
    ok
}

/// Runs `scripts/python/SCRIPT ARGS` (found next to the sources this binary was built
/// from) and reads its `{"row": ID, "value": X, ...}` lines.
pub(super) fn run(script: &str, args: &[&str]) -> Res<Vec<(String, f64)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/python")
        .join(script);
    let out = Command::new("python3").arg(path).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "the Python benchmark {script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // The two fields we need, without a JSON crate.
        let field = |key: &str| {
            let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
            let rest = &line[at..];
            let end = rest.find([',', '}'])?;
            Some(rest[..end].trim().trim_matches('"').to_owned())
        };
        if let (Some(id), Some(v)) = (field("row"), field("value")) {
            rows.push((id, v.parse()?));
        }
    }
    Ok(rows)
}

/// A group of rows that Python's `multiprocessing` runs too: what [`interleaved`] needs.
pub(super) struct Group {
    /// The progress line's name.
    pub(super) what: &'static str,
    /// The table's title.
    pub(super) title: &'static str,
    pub(super) rows: &'static [Row],
    /// Items for us and for Python: in a quick run, in a full one.
    pub(super) sizes: [(u64, u64); 2],
    /// The script, and its arguments after Python's item count.
    pub(super) script: (&'static str, &'static [&'static str]),
}

/// `rounds` rounds of `group`: ours (`ours(items)`, once a round) and, when `python3` is
/// there, Python's in the same rounds, interleaved; the table.
pub(super) fn interleaved(
    group: &Group,
    rounds: usize,
    full: bool,
    mut ours: impl FnMut(u64) -> Res<Vec<(&'static str, f64)>>,
) -> Res<String> {
    let (n, n_py) = group.sizes[usize::from(full)];
    let n_py = n_py.to_string();
    let mut args = vec![n_py.as_str()];
    args.extend_from_slice(group.script.1);
    let python = available();
    let mut mine: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut theirs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        eprint!("\r\x1b[2K{}: round {}/{rounds}", group.what, round + 1);
        for (id, v) in ours(n)? {
            mine.entry(id).or_default().push(v);
        }
        if python {
            for (id, v) in run(group.script.0, &args)? {
                theirs.entry(id).or_default().push(v);
            }
        }
    }
    eprint!("\r\x1b[2K");
    Ok(table(group.title, group.rows, &mine, &theirs, python))
}

/// Median and (min, max) of `v`.
pub(super) fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// The table of `rows`: ours and Python's medians with their spread, and the ratio.
pub(super) fn table(
    title: &str,
    rows: &[Row],
    ours: &BTreeMap<&str, Vec<f64>>,
    theirs: &BTreeMap<String, Vec<f64>>,
    python_ran: bool,
) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ =
        writeln!(
        t,
        "\n{title}; medians of {} rounds, [min-max]; Python's multiprocessing in the same rounds{}; the ratio is the median of the rounds' ratios",
        ours.values().next().map_or(0, Vec::len),
        if python_ran { "" } else { ": skipped, no python3" }
    );
    let _ = writeln!(
        t,
        "{:<34} {:>26} {:>24} {:>16}",
        "", "shmkit", "python", "ratio [min-max]"
    );
    for row in rows {
        let Some(v) = ours.get(row.id) else { continue };
        let (m, lo, hi) = stats(v);
        let mine = format!("{} [{}-{}] {}", num(m), num(lo), num(hi), row.unit);
        let python_id = row.id.split('+').next().unwrap_or(row.id);
        let (py, ratio) = match theirs.get(python_id) {
            Some(p) if !p.is_empty() => {
                let (pm, plo, phi) = stats(p);
                (
                    format!("{} [{}-{}]", num(pm), num(plo), num(phi)),
                    ratio(v, p, row.higher_is_better),
                )
            }
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(t, "{:<34} {mine:>26} {py:>24} {ratio:>16}", row.label);
    }
    t
}

/// The rounds' ratios `a[i] / b[i]`, round `i` of both measured back to back, so that a
/// change of the VM's mood between rounds cancels out. Every group pushes one value per
/// round for each of its rows (a failed round ends the run), so the two line up; should
/// they not, the quotient of the medians stands in (one value).
pub(super) fn round_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    if a.is_empty() || b.is_empty() {
        return vec![f64::NAN];
    }
    if a.len() != b.len() {
        return vec![stats(a).0 / stats(b).0];
    }
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// The median of [`round_ratios`].
pub(super) fn paired(a: &[f64], b: &[f64]) -> f64 {
    stats(&round_ratios(a, b)).0
}

/// Ours against Python's, as "median× [min-max]" of the rounds' ratios.
fn ratio(ours: &[f64], theirs: &[f64], higher_is_better: bool) -> String {
    let rs = if higher_is_better {
        round_ratios(ours, theirs)
    } else {
        round_ratios(theirs, ours)
    };
    let (m, lo, hi) = stats(&rs);
    // Whole numbers for the large ratios; one decimal where that would hide the spread.
    let d = if lo < 10.0 { 1 } else { 0 };
    format!("{m:.1}× [{lo:.d$}-{hi:.d$}]")
}

/// A number with three significant digits and a k/M suffix.
pub(super) fn num(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
