//! Reading samples out of the Prometheus text format.

/// Sum of the samples of `name` whose labels include every `(label, value)` of
/// `labels`; 0 when there are none. `name` is matched exactly (so `_total` counters and
/// histogram `_bucket` series are told apart).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let has_all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if !has_all {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let text = "# HELP x\n\
                    eventcast_events_in_total{priority=\"high\",topic=\"a\"} 2\n\
                    eventcast_events_in_total{priority=\"normal\",topic=\"a\"} 3\n\
                    eventcast_events_in_total{priority=\"normal\",topic=\"b\"} 7\n\
                    eventcast_connections 4\n";
        assert!((metric(text, "eventcast_events_in_total", &[("topic", "a")]) - 5.0).abs() < f64::EPSILON);
        assert!((metric(text, "eventcast_events_in_total", &[]) - 12.0).abs() < f64::EPSILON);
        assert!((metric(text, "eventcast_connections", &[]) - 4.0).abs() < f64::EPSILON);
        assert!(metric(text, "eventcast_events_in", &[]).abs() < f64::EPSILON);
    }
}
