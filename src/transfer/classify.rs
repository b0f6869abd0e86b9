//! File name → element.
//!
//! MMITSS names a log `<CoprocessorName>_<element>Log_<MMDDYYYY>_<HHMMSS>.csv`.
//! The coprocessor's own name is free text and can spell an element ("Spatz
//! Ave", "srmLog_Street"), so a substring search like the seed's routes files
//! to the wrong folder. We split the stem on `_` and take the *rightmost*
//! token of the form `<element>Log` (the collector always writes the element
//! token after the name), comparing ASCII case-insensitively. The message
//! count log is written as `msgCountsLog` although its element is `msgCount`.
//!
//! A file that matches nothing is `None`: it still lands, under the
//! intersection's folder, and is never dropped.

/// The element `file_name` belongs to, as it is spelled in `elements`.
pub fn classify<'a>(file_name: &str, elements: &'a [String]) -> Option<&'a str> {
    let stem = match file_name.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem,
        _ => file_name,
    };
    stem.split('_')
        .rev()
        .find_map(|token| element_of_token(token, elements))
}

fn element_of_token<'a>(token: &str, elements: &'a [String]) -> Option<&'a str> {
    let base = strip_suffix_ci(token, "Log")?;
    elements.iter().map(String::as_str).find(|element| {
        base.eq_ignore_ascii_case(element)
            || strip_suffix_ci(base, "s")
                .is_some_and(|singular| singular.eq_ignore_ascii_case(element))
    })
}

fn strip_suffix_ci<'s>(s: &'s str, suffix: &str) -> Option<&'s str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let (head, tail) = (s.get(..cut)?, s.get(cut..)?);
    (tail.eq_ignore_ascii_case(suffix) && !head.is_empty()).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ELEMENTS;

    fn elements() -> Vec<String> {
        DEFAULT_ELEMENTS.iter().map(|s| s.to_string()).collect()
    }

    fn class(name: &str) -> Option<String> {
        classify(name, &elements()).map(str::to_string)
    }

    #[test]
    fn routes_each_mmitss_log_to_its_element() {
        let cases = [
            ("Main_spatLog_11252026_000001.csv", "spat"),
            ("Main_remoteBsmLog_11252026_000001.csv", "remoteBsm"),
            ("Main_srmLog_11252026_000001.csv", "srm"),
            ("Main_ssmLog_11252026_000001.csv", "ssm"),
            ("Main_msgCountsLog_11252026_000001.csv", "msgCount"),
        ];
        for (name, element) in cases {
            assert_eq!(class(name).as_deref(), Some(element), "{name}");
        }
    }

    #[test]
    fn coprocessor_names_that_spell_an_element_do_not_misroute() {
        assert_eq!(
            class("SpatzAve_srmLog_11252026_000001.csv").as_deref(),
            Some("srm")
        );
        assert_eq!(
            class("srmLog_Street_ssmLog_11252026_000001.csv").as_deref(),
            Some("ssm")
        );
        assert_eq!(
            class("ssm-spat-srm_remoteBsmLog_01012026_120000.csv").as_deref(),
            Some("remoteBsm")
        );
        assert_eq!(
            class("Spatz_Ave_msgCountsLog_01012026_120000.csv").as_deref(),
            Some("msgCount")
        );
    }

    #[test]
    fn unknown_or_elementless_names_are_none() {
        for name in [
            "Main_11252026_000001.zip",
            "notes.txt",
            "Main_hostBsmLog_11252026_000001.csv",
            "spat.csv",
            "Log",
            "",
            ".",
            "_Log_",
            "SpatzAve_11252026_000001.csv",
        ] {
            assert_eq!(class(name), None, "{name:?}");
        }
    }

    #[test]
    fn case_is_ignored_and_extension_optional() {
        assert_eq!(class("X_SPATLOG_1_2").as_deref(), Some("spat"));
        assert_eq!(
            class("X_remotebsmlog_1_2.csv.gz").as_deref(),
            Some("remoteBsm")
        );
        assert_eq!(class("X_remotebsmlog_1_2").as_deref(), Some("remoteBsm"));
    }

    #[test]
    fn custom_element_lists_are_honoured() {
        let els = vec!["hostBsm".to_string()];
        assert_eq!(classify("V_hostBsmLog_1_2.csv", &els), Some("hostBsm"));
        assert_eq!(classify("V_spatLog_1_2.csv", &els), None);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for name in [
            "é_Log",
            "Ÿs_Log.csv",
            "\u{7f}Log",
            "sLog",
            "_sLog",
            "a.b.c",
            "...",
        ] {
            let _ = class(name);
        }
    }
}
