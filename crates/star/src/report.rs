//! A STaR run's results as a Markdown table and an SVG chart (pure text, so the browser demo can
//! draw the same).

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::evaluate::EvalResult;

/// One iteration's numbers (iteration 0 is the base model before STaR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRow {
    pub iteration: usize,
    /// Training questions; of them, answered right by the model's own rationale (kept), right only
    /// with the hint (rationalized), or neither.
    pub train_total: usize,
    pub kept: usize,
    pub rationalized: usize,
    pub rejected: usize,
    /// Of the kept / rationalized completions, those whose every step is right (tasks whose steps
    /// can be checked): the rest reached the right answer through a wrong step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_sound: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationalized_sound: Option<usize>,
    /// Fine-tuning steps of this iteration's model.
    pub steps: usize,
    /// Multiple-choice tasks: the answers of the completions fine-tuned on, by answer — a kept
    /// set that over-represents the base model's favourite letter teaches that letter.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub trained_answers: std::collections::BTreeMap<String, usize>,
    /// Dev-set accuracy of this iteration's model.
    pub dev: EvalResult,
    /// The same with the hint (the base model, for the gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_hinted: Option<EvalResult>,
    pub seconds: f64,
}

impl IterationRow {
    /// Iteration 0: the base model's dev accuracy (and with the hint, for the gate), before STaR.
    pub fn base(train_total: usize, dev: EvalResult, dev_hinted: Option<EvalResult>) -> Self {
        Self {
            iteration: 0,
            train_total,
            kept: 0,
            rationalized: 0,
            rejected: 0,
            kept_sound: None,
            rationalized_sound: None,
            steps: 0,
            trained_answers: Default::default(),
            dev,
            dev_hinted,
            seconds: 0.0,
        }
    }

    /// Share of the training set the iteration fine-tuned on.
    pub fn used_share(&self) -> f64 {
        share(self.kept + self.rationalized, self.train_total)
    }
    /// Share of the training set that came from rationalization.
    pub fn rationalized_share(&self) -> f64 {
        share(self.rationalized, self.train_total)
    }

    /// Share of the kept and rationalized completions whose every step is right, where the
    /// task's steps can be checked.
    pub fn sound_share(&self) -> Option<f64> {
        Some(share(self.kept_sound? + self.rationalized_sound?, self.kept + self.rationalized))
    }
}

fn share(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// Groups seen in any row, in natural order (`2 digits` before `10 digits`).
pub fn groups(rows: &[IterationRow]) -> Vec<String> {
    let set: BTreeSet<(usize, String)> = rows
        .iter()
        .flat_map(|r| r.dev.by_group.keys())
        .map(|g| (g.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX), g.clone()))
        .collect();
    set.into_iter().map(|(_, g)| g).collect()
}

/// `| iteration | dev accuracy | per group … | train used | rationalized | [all steps right] | steps |`,
/// in percent; the steps column only where the task's steps can be checked.
pub fn markdown_table(rows: &[IterationRow]) -> String {
    let groups = groups(rows);
    let checked = rows.iter().any(|r| r.sound_share().is_some());
    let mut s = String::from("| iteration | dev accuracy %");
    for g in &groups {
        let _ = write!(s, " | {g} %");
    }
    s.push_str(" | train set used % | from rationalization %");
    if checked {
        s.push_str(" | every step right %");
    }
    s.push_str(" | steps |\n|---|---");
    s.push_str(&"|---".repeat(groups.len() + 3 + usize::from(checked)));
    s.push_str("|\n");
    for r in rows {
        let name = if r.iteration == 0 { "0 (base)".to_string() } else { r.iteration.to_string() };
        let _ = write!(s, "| {name} | {}", pct(r.dev.accuracy()));
        for g in &groups {
            let cell = r.dev.by_group.get(g).map_or("–".to_string(), |t| pct(t.accuracy()));
            let _ = write!(s, " | {cell}");
        }
        if r.iteration == 0 {
            s.push_str(&" | –".repeat(3 + usize::from(checked)));
            s.push_str(" |\n");
        } else {
            let _ = write!(s, " | {} | {}", pct(r.used_share()), pct(r.rationalized_share()));
            if checked {
                let _ = write!(s, " | {}", r.sound_share().map_or("–".to_string(), pct));
            }
            let _ = writeln!(s, " | {} |", r.steps);
        }
    }
    s.push_str(&answer_balance(rows));
    s
}

/// For multiple-choice tasks, a second table: per iteration, how often each answer was trained
/// on and given on the dev set, beside the dev set's gold answers (empty for other tasks).
pub fn answer_balance(rows: &[IterationRow]) -> String {
    let letters: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.trained_answers.keys().chain(r.dev.answers.keys()).chain(r.dev.golds.keys()))
        .collect();
    if letters.is_empty() {
        return String::new();
    }
    let counts = |m: &std::collections::BTreeMap<String, usize>| {
        letters.iter().map(|l| m.get(*l).copied().unwrap_or(0).to_string()).collect::<Vec<_>>().join(" / ")
    };
    let names = letters.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(" / ");
    let mut s = format!(
        "\n| iteration | trained on ({names}) | dev answers ({names}) | dev gold ({names}) |\n|---|---|---|---|\n"
    );
    for r in rows {
        let trained = if r.iteration == 0 { "–".to_string() } else { counts(&r.trained_answers) };
        let _ = writeln!(s, "| {} | {trained} | {} | {} |", r.iteration, counts(&r.dev.answers), counts(&r.dev.golds));
    }
    s
}

const COLORS: [&str; 8] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];

/// Accuracy per group (or overall, without groups) against iteration, with the share of the train
/// set used drawn dashed.
pub fn svg_chart(rows: &[IterationRow], title: &str) -> String {
    let (w, h) = (640.0, 400.0);
    let (left, right, top, bottom) = (56.0, 150.0, 40.0, 48.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max_it = rows.iter().map(|r| r.iteration).max().unwrap_or(1).max(1) as f64;
    let x = |it: usize| left + pw * it as f64 / max_it;
    let y = |acc: f64| top + ph * (1.0 - acc.clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    for i in 0..=5 {
        let acc = i as f64 / 5.0;
        let _ = write!(s, r##"<line x1="{left}" x2="{}" y1="{1}" y2="{1}" stroke="#ddd"/>"##, left + pw, y(acc));
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}%</text>"#,
            left - 6.0,
            y(acc) + 4.0,
            (acc * 100.0) as u32
        );
    }
    for r in rows {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(r.iteration),
            top + ph + 18.0,
            r.iteration
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">STaR iteration (0 = base model)</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    for (i, Series { name, points, dashed }) in series(rows).iter().enumerate() {
        let color = match (dashed, name.as_str()) {
            (true, "train set used") => "#000",
            (true, _) => "#c00",
            (false, _) => COLORS[i % COLORS.len()],
        };
        let path: Vec<String> = points.iter().map(|&(it, a)| format!("{:.1},{:.1}", x(it), y(a))).collect();
        let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ =
            write!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#, path.join(" "));
        for &(it, a) in points {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(it), y(a));
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{0}" x2="{1}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
            w - right + 12.0,
            w - right + 34.0
        );
        let _ = write!(s, r#"<text x="{}" y="{}">{}</text>"#, w - right + 40.0, ly + 4.0, escape(name));
    }
    s.push_str("</svg>\n");
    s
}

/// One line of the chart: a share per iteration.
struct Series {
    name: String,
    points: Vec<(usize, f64)>,
    /// Drawn dashed (not an accuracy).
    dashed: bool,
}

/// Dev accuracy per group (or overall, without groups), then the share of the train set used.
fn series(rows: &[IterationRow]) -> Vec<Series> {
    let groups = groups(rows);
    let mut out: Vec<Series> = if groups.is_empty() {
        let points = rows.iter().map(|r| (r.iteration, r.dev.accuracy())).collect();
        vec![Series { name: "dev accuracy".into(), points, dashed: false }]
    } else {
        groups
            .iter()
            .map(|g| Series {
                name: g.clone(),
                points: rows
                    .iter()
                    .filter_map(|r| r.dev.by_group.get(g).map(|t| (r.iteration, t.accuracy())))
                    .collect(),
                dashed: false,
            })
            .collect()
    };
    out.push(Series {
        name: "train set used".into(),
        points: rows.iter().filter(|r| r.iteration > 0).map(|r| (r.iteration, r.used_share())).collect(),
        dashed: true,
    });
    let sound: Vec<(usize, f64)> = rows.iter().filter_map(|r| Some((r.iteration, r.sound_share()?))).collect();
    if !sound.is_empty() {
        out.push(Series { name: "every step right".into(), points: sound, dashed: true });
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Tally;

    fn row(it: usize, by: &[(&str, usize)]) -> IterationRow {
        let mut dev = EvalResult::default();
        for &(g, c) in by {
            dev.by_group.insert(g.into(), Tally { correct: c, total: 10 });
            dev.overall.correct += c;
            dev.overall.total += 10;
        }
        IterationRow {
            iteration: it,
            train_total: 100,
            kept: 10 * it,
            rationalized: 5 * it,
            rejected: 100 - 15 * it,
            kept_sound: None,
            rationalized_sound: None,
            steps: 40,
            trained_answers: Default::default(),
            dev,
            dev_hinted: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn table_and_chart_show_every_group() {
        let rows = vec![
            row(0, &[("1 digits", 5), ("10 digits", 0), ("2 digits", 1)]),
            row(1, &[("1 digits", 9), ("10 digits", 1), ("2 digits", 6)]),
        ];
        assert_eq!(groups(&rows), ["1 digits", "2 digits", "10 digits"]);
        let t = markdown_table(&rows);
        assert!(t.starts_with("| iteration | dev accuracy % | 1 digits % | 2 digits % | 10 digits % |"), "{t}");
        assert!(t.contains("| 0 (base) | 20.0 | 50.0 | 10.0 | 0.0 | – | – | – |"), "{t}");
        assert!(t.contains("| 1 | 53.3 | 90.0 | 60.0 | 10.0 | 15.0 | 5.0 | 40 |"), "{t}");
        let svg = svg_chart(&rows, "a <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a &lt;test&gt;"));
    }

    #[test]
    fn multiple_choice_runs_show_their_answer_balance() {
        let mut rows = vec![row(0, &[]), row(1, &[])];
        assert!(!markdown_table(&rows).contains("trained on"), "no letters, no second table");
        rows[0].dev.answers = [("a".to_string(), 2), ("e".to_string(), 8)].into();
        rows[0].dev.golds = [("a".to_string(), 5), ("c".to_string(), 5)].into();
        rows[1].trained_answers = [("c".to_string(), 3), ("e".to_string(), 9)].into();
        let t = markdown_table(&rows);
        assert!(
            t.contains("| iteration | trained on (a / c / e) | dev answers (a / c / e) | dev gold (a / c / e) |"),
            "{t}"
        );
        assert!(t.contains("| 0 | – | 2 / 0 / 8 | 5 / 5 / 0 |"), "{t}");
        assert!(t.contains("| 1 | 0 / 3 / 9 | 0 / 0 / 0 | 0 / 0 / 0 |"), "{t}");
    }

    #[test]
    fn checked_steps_get_a_column_and_a_line() {
        let mut rows = vec![row(0, &[("1 digits", 5)]), row(1, &[("1 digits", 9)])];
        rows[1].kept_sound = Some(8);
        rows[1].rationalized_sound = Some(1);
        assert_eq!(rows[1].sound_share(), Some(0.6));
        let t = markdown_table(&rows);
        assert!(t.contains("| every step right % | steps |"), "{t}");
        assert!(t.contains("| 0 (base) | 50.0 | 50.0 | – | – | – | – |"), "{t}");
        assert!(t.contains("| 1 | 90.0 | 90.0 | 15.0 | 5.0 | 60.0 | 40 |"), "{t}");
        assert_eq!(t.lines().nth(1), Some("|---|---|---|---|---|---|---|"));
        let svg = svg_chart(&rows, "t");
        assert!(svg.contains("every step right"));
    }
}
