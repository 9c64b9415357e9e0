//! The report: a table of absolute figures and ratios, with PASS/MISS against the targets
//! (never failing on a miss), printed and written as JSON.

/// One line of the report.
#[derive(Clone)]
struct Row {
    scenario: String,
    metric: String,
    value: f64,
    unit: &'static str,
    /// (against, ratio, target, higher is better)
    ratio: Option<(String, f64, f64, bool)>,
}

#[derive(Default)]
pub struct Report(Vec<Row>);

impl Report {
    pub fn add(&mut self, scenario: &str, metric: &str, value: f64, unit: &'static str) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            ratio: None,
        });
    }

    /// A ratio `ours / theirs` with a target (`higher`: ratio ≥ target passes, else ≤).
    pub fn ratio(
        &mut self,
        scenario: &str,
        metric: &str,
        against: &str,
        ratio: f64,
        target: f64,
        higher: bool,
    ) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value: ratio,
            unit: "x",
            ratio: Some((against.into(), ratio, target, higher)),
        });
    }

    /// An absolute figure with a target.
    pub fn target(
        &mut self,
        scenario: &str,
        metric: &str,
        value: f64,
        unit: &'static str,
        target: f64,
        higher: bool,
    ) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            ratio: Some(("target".into(), value, target, higher)),
        });
    }

    pub fn print(&self) {
        let w = self
            .0
            .iter()
            .map(|r| r.metric.len())
            .max()
            .unwrap_or(0)
            .max(46);
        println!(
            "\n{:<8} {:<w$} {:>14} {:<5} target",
            "scenario", "metric", "value", "unit"
        );
        for r in &self.0 {
            let verdict = match &r.ratio {
                Some((_, v, t, higher)) => {
                    let pass = if *higher { v >= t } else { v <= t };
                    format!(
                        "{} {}{}",
                        if pass { "PASS" } else { "MISS" },
                        if *higher { ">=" } else { "<=" },
                        t
                    )
                }
                None => String::new(),
            };
            println!(
                "{:<8} {:<w$} {:>14.3} {:<5} {}",
                r.scenario, r.metric, r.value, r.unit, verdict
            );
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|r| {
                    let mut o = serde_json::json!({
                        "scenario": r.scenario, "metric": r.metric, "value": r.value, "unit": r.unit,
                    });
                    if let Some((against, _, target, higher)) = &r.ratio {
                        let pass = if *higher { r.value >= *target } else { r.value <= *target };
                        o["against"] = against.clone().into();
                        o["target"] = (*target).into();
                        o["pass"] = pass.into();
                    }
                    o
                })
                .collect(),
        )
    }
}
