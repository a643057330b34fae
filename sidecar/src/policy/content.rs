//! Content rules on published event data (BroadcastPolicy `content`): removing
//! redacted fields before an event is stored or delivered, and refusing payloads that
//! carry script content (`denyScripts`) which a careless client could render as HTML.
//!
//! Script detection is a deny-list tuned to catch what executes in a browser — script
//! tags, `javascript:`/`vbscript:`/`data:text/html` URLs, inline event handlers inside
//! a tag, `<iframe>`/`<object>`/`<embed>`, also when spelled with HTML entities —
//! without flagging ordinary prose ("I love javascript", "a < b and c > d"). It is a
//! safety net, not a sanitizer: clients must still escape what they render.
//!
//! Work is bounded: one pass over the payload, stopping at the first hit, each string
//! scanned by one precompiled regex (linear time) and, if it contains `&`, once more
//! after entity decoding. Data nested deeper than [`MAX_DEPTH`] is not inspected and
//! is reported as a hit, so depth cannot smuggle content past the check.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Deepest nesting inspected below `data`.
pub const MAX_DEPTH: usize = 64;

/// Longest snippet reported.
const MAX_SNIPPET_CHARS: usize = 40;

/// Longest path reported (keys are client-chosen and may be long).
const MAX_PATH_CHARS: usize = 200;

/// Removes each path (segments under `data`, e.g. ["password"] or ["user","ssn"];
/// numeric segments index arrays; a "*" segment matches every key/element) from
/// `data`. Returns how many fields were removed.
///
/// A path ending at an array element removes the element, so later elements move up
/// (a `*` at the end of a path empties the object or array it names). Paths that do
/// not exist in `data` are ignored.
pub fn redact(data: &mut Value, paths: &[Vec<String>]) -> usize {
    paths.iter().map(|path| remove_path(data, path)).sum()
}

fn remove_path(value: &mut Value, path: &[String]) -> usize {
    let Some((segment, rest)) = path.split_first() else {
        return 0;
    };
    let wildcard = segment == "*";
    match value {
        Value::Object(map) => match (wildcard, rest.is_empty()) {
            (true, true) => {
                let n = map.len();
                map.clear();
                n
            }
            (true, false) => map.values_mut().map(|v| remove_path(v, rest)).sum(),
            (false, true) => usize::from(map.remove(segment.as_str()).is_some()),
            (false, false) => map.get_mut(segment.as_str()).map_or(0, |v| remove_path(v, rest)),
        },
        Value::Array(items) => {
            if wildcard {
                if rest.is_empty() {
                    let n = items.len();
                    items.clear();
                    n
                } else {
                    items.iter_mut().map(|v| remove_path(v, rest)).sum()
                }
            } else {
                let Ok(index) = segment.parse::<usize>() else {
                    return 0;
                };
                if index >= items.len() {
                    0
                } else if rest.is_empty() {
                    items.remove(index);
                    1
                } else {
                    items.get_mut(index).map_or(0, |v| remove_path(v, rest))
                }
            }
        }
        _ => 0,
    }
}

/// First string value (or object key) with script content, as (json path like
/// "data.comment", matched snippet ≤ 40 chars); None if clean.
///
/// Paths are dotted from `data`, with array indexes as segments (`data.items.2.text`).
/// Data nested more than [`MAX_DEPTH`] levels is reported with the snippet
/// `nesting deeper than 64 levels`.
pub fn find_script(data: &Value) -> Option<(String, String)> {
    let mut path = String::from("data");
    scan(data, &mut path, 0).map(|snippet| (shorten(&path, MAX_PATH_CHARS), snippet))
}

/// Scans `value` at `path`; on a hit, `path` is left pointing at it.
fn scan(value: &Value, path: &mut String, depth: usize) -> Option<String> {
    match value {
        Value::String(s) => script_in(s),
        Value::Array(items) if !items.is_empty() => {
            if depth >= MAX_DEPTH {
                return Some(too_deep());
            }
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                let _ = write!(path, ".{i}");
                if let Some(hit) = scan(item, path, depth + 1) {
                    return Some(hit);
                }
                path.truncate(len);
            }
            None
        }
        Value::Object(map) if !map.is_empty() => {
            if depth >= MAX_DEPTH {
                return Some(too_deep());
            }
            let len = path.len();
            for (key, item) in map {
                path.push('.');
                path.push_str(key);
                if let Some(hit) = script_in(key).or_else(|| scan(item, path, depth + 1)) {
                    return Some(hit);
                }
                path.truncate(len);
            }
            None
        }
        _ => None,
    }
}

fn too_deep() -> String {
    format!("nesting deeper than {MAX_DEPTH} levels")
}

/// One regex for every form of script content (case-insensitive).
static SCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    // Browsers skip ASCII whitespace and control characters inside a URL scheme.
    let gap = r"[\x00-\x20]*";
    let spaced = |word: &str| {
        word.chars()
            .map(|c| regex::escape(c.encode_utf8(&mut [0; 4])))
            .collect::<Vec<_>>()
            .join(gap)
    };
    let pattern = [
        // Script tags, opening or closing.
        r"</?script\b".to_owned(),
        // Embedding elements.
        r"<(?:iframe|object|embed)\b".to_owned(),
        // An inline event handler attribute inside a tag: <img src=x onerror=...>,
        // <svg/onload=...>.
        r#"<[a-z][^<>]*?[\s/"'`]on[a-z]+\s*="#.to_owned(),
        // Script URL schemes, where a URL can start: at the start of the string or
        // after punctuation (`href="…`, `url(…`, `[x](…`), not inside prose
        // ("I love javascript: …").
        format!(
            r"(?:^|[^\w\s]){gap}(?P<hit>(?:{}|{}){gap}:)",
            spaced("javascript"),
            spaced("vbscript")
        ),
        // HTML documents as data URLs.
        format!(r"data{gap}:{gap}text{gap}/{gap}html"),
    ]
    .join("|");
    #[allow(clippy::expect_used)]
    Regex::new(&format!("(?i){pattern}")).expect("script pattern is valid")
});

/// The snippet of script content in `s`, if any: checked as written and, when it
/// contains entities, as a browser would decode them.
fn script_in(s: &str) -> Option<String> {
    if let Some(hit) = first_match(s) {
        return Some(hit);
    }
    match decode_entities(s) {
        Cow::Owned(decoded) => first_match(&decoded),
        Cow::Borrowed(_) => None,
    }
}

fn first_match(s: &str) -> Option<String> {
    let captures = SCRIPT.captures(s)?;
    let m = captures.name("hit").or_else(|| captures.get(0))?;
    Some(shorten(m.as_str(), MAX_SNIPPET_CHARS))
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.to_owned(),
    }
}

/// Named entities that can spell script content; the legacy uppercase forms browsers
/// accept are included.
const ENTITIES: &[(&str, char)] = &[
    ("lt", '<'),
    ("LT", '<'),
    ("gt", '>'),
    ("GT", '>'),
    ("amp", '&'),
    ("AMP", '&'),
    ("quot", '"'),
    ("QUOT", '"'),
    ("apos", '\''),
    ("colon", ':'),
    ("Tab", '\t'),
    ("NewLine", '\n'),
    ("sol", '/'),
    ("lpar", '('),
    ("rpar", ')'),
    ("equals", '='),
];

/// Named entities browsers also recognise without `;`.
const LEGACY_ENTITIES: &[(&str, char)] = &[
    ("lt", '<'),
    ("LT", '<'),
    ("gt", '>'),
    ("GT", '>'),
    ("amp", '&'),
    ("AMP", '&'),
    ("quot", '"'),
    ("QUOT", '"'),
];

/// Decodes numeric (`&#60;`, `&#x3C;`, leading zeros, `;` optional) and the named
/// entities above (`;` optional), once. Returns the input unchanged when it holds none.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match decode_one(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
                changed = true;
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if changed { Cow::Owned(out) } else { Cow::Borrowed(s) }
}

/// Decodes the entity at the start of `s` (just after `&`): the character and the
/// bytes consumed.
fn decode_one(s: &str) -> Option<(char, usize)> {
    let bytes = s.as_bytes();
    let semicolon = |end: usize| if bytes.get(end) == Some(&b';') { end + 1 } else { end };
    if let Some(num) = s.strip_prefix('#') {
        let (radix, digits_at) = match num.as_bytes().first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = s[digits_at..]
            .bytes()
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        if digits == 0 {
            return None;
        }
        let value = s[digits_at..digits_at + digits]
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0u32, |acc, d| acc.saturating_mul(radix).saturating_add(d));
        let c = char::from_u32(value).filter(|c| *c != '\0').unwrap_or('\u{FFFD}');
        return Some((c, semicolon(digits_at + digits)));
    }
    let name_len = bytes.iter().take(8).take_while(|b| b.is_ascii_alphabetic()).count();
    let name = &s[..name_len];
    if let Some((_, c)) = ENTITIES.iter().find(|(n, _)| *n == name) {
        return Some((*c, semicolon(name_len)));
    }
    // Legacy entities are decoded in text even without `;` and before more letters
    // (`&ltscript` reads as `<script`).
    LEGACY_ENTITIES
        .iter()
        .find(|(n, _)| name.starts_with(n))
        .map(|(n, c)| (*c, n.len()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(list: &[&str]) -> Vec<Vec<String>> {
        list.iter().map(|p| p.split('.').map(str::to_owned).collect()).collect()
    }

    #[test]
    fn redact_top_level_and_nested_fields() {
        let mut data = json!({"password": "hunter2", "user": {"name": "a", "ssn": "123"}, "keep": 1});
        let n = redact(&mut data, &paths(&["password", "user.ssn"]));
        assert_eq!(n, 2);
        assert_eq!(data, json!({"user": {"name": "a"}, "keep": 1}));
    }

    #[test]
    fn redact_missing_paths_is_a_no_op() {
        let mut data = json!({"a": {"b": 1}, "s": "text", "list": [1, 2]});
        let before = data.clone();
        let n = redact(
            &mut data,
            &paths(&["x", "a.c", "a.b.c", "s.len", "list.5", "list.x", "list.0.y"]),
        );
        assert_eq!(n, 0);
        assert_eq!(data, before);
        assert_eq!(redact(&mut data, &[vec![]]), 0);
        let mut scalar = json!("just text");
        assert_eq!(redact(&mut scalar, &paths(&["a", "*"])), 0);
    }

    #[test]
    fn redact_array_indexes() {
        let mut data = json!({"cards": [{"number": "4111", "last4": "1111"}, {"number": "5500", "last4": "0004"}]});
        assert_eq!(redact(&mut data, &paths(&["cards.1.number"])), 1);
        assert_eq!(
            data,
            json!({"cards": [{"number": "4111", "last4": "1111"}, {"last4": "0004"}]})
        );
        assert_eq!(redact(&mut data, &paths(&["cards.0"])), 1);
        assert_eq!(data, json!({"cards": [{"last4": "0004"}]}));
    }

    #[test]
    fn redact_wildcards() {
        let mut data = json!({
            "cards": [{"number": "4111", "last4": "1111"}, {"number": "5500"}, {"last4": "9"}, "x"],
            "users": {"a": {"ssn": 1, "n": 1}, "b": {"ssn": 2}, "c": 3},
            "secrets": {"k1": 1, "k2": 2},
            "list": [1, 2, 3]
        });
        let n = redact(
            &mut data,
            &paths(&["cards.*.number", "users.*.ssn", "secrets.*", "list.*"]),
        );
        assert_eq!(n, 2 + 2 + 2 + 3);
        assert_eq!(
            data,
            json!({
                "cards": [{"last4": "1111"}, {}, {"last4": "9"}, "x"],
                "users": {"a": {"n": 1}, "b": {}, "c": 3},
                "secrets": {},
                "list": []
            })
        );
    }

    #[test]
    fn redact_numeric_segment_on_an_object_is_a_key() {
        let mut data = json!({"0": "zero", "1": "one"});
        assert_eq!(redact(&mut data, &paths(&["0"])), 1);
        assert_eq!(data, json!({"1": "one"}));
    }

    fn hit(data: &Value) -> (String, String) {
        find_script(data).unwrap_or_else(|| panic!("expected a hit in {data}"))
    }

    #[test]
    fn script_tags() {
        for text in [
            "<script>alert(1)</script>",
            "hello <SCRIPT src=//evil.example/x.js>",
            "<ScRiPt>",
            "</script><b>",
            "<script/src=x>",
            "<script",
        ] {
            let (path, snippet) = hit(&json!({"comment": text}));
            assert_eq!(path, "data.comment");
            assert!(snippet.to_ascii_lowercase().contains("script"), "{text}: {snippet}");
        }
    }

    #[test]
    fn script_urls() {
        for text in [
            "javascript:alert(1)",
            "  JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "\u{1}javascript:alert(1)",
            "jav\u{0}ascript:alert(1)",
            "javascript :alert(1)",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=javascript:alert(1)>x</a>",
            "[click](javascript:alert(1))",
            "vbscript:msgbox(1)",
            "VBScript:msgbox(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "see DATA:TEXT/HTML,<b>",
        ] {
            let (path, snippet) = hit(&json!({"link": text}));
            assert_eq!(path, "data.link", "{text}");
            assert!(snippet.len() <= 40, "{snippet}");
        }
        let (_, snippet) = hit(&json!({"link": "java\tscript:alert(1)"}));
        assert_eq!(snippet, "java\tscript:");
    }

    #[test]
    fn inline_event_handlers_and_embedding_tags() {
        for text in [
            "<img src=x onerror=alert(1)>",
            "<img src=x ONERROR = alert(1)>",
            "<svg onload=alert(1)>",
            "<svg/onload=alert(1)>",
            "<body onpageshow=\"alert(1)\">",
            "<a href='x' onclick='go()'>",
            "<iframe src=//evil.example>",
            "<IFRAME>",
            "<object data=x>",
            "<embed src=x>",
        ] {
            assert!(find_script(&json!(text)).is_some(), "{text}");
        }
        let (_, snippet) = hit(&json!("<img src=x onerror=alert(1)>"));
        assert_eq!(snippet, "<img src=x onerror=");
    }

    #[test]
    fn entity_obfuscated_forms() {
        for text in [
            "&#x3C;script>alert(1)",
            "&#X3c;SCRIPT>",
            "&#60;script>",
            "&#0000060script>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "&LT;script",
            "&ltscript>",
            "&lt;img src=x onerror=alert(1)&gt;",
            "java&#x09;script:alert(1)",
            "java&Tab;script:alert(1)",
            "javascript&colon;alert(1)",
            "&#106;avascript:alert(1)",
        ] {
            assert!(find_script(&json!({"t": text})).is_some(), "{text}");
        }
    }

    #[test]
    fn ordinary_text_is_clean() {
        for text in [
            "I love javascript",
            "I love javascript: it is everywhere",
            "Topics: javascript, rust",
            "onion=3",
            "a < b and c > d",
            "x<y",
            "if (a<b && c>d) return;",
            "the description of my script",
            "subscription <scripts folder>",
            "AT&T &amp; friends &copy; &#",
            "&lscript",
            "metadata:text/plain",
            "<b>bold</b> and <i>italic</i>",
            "<a href=\"https://example.com\">link</a>",
            "mailto:someone@example.com",
            "objection <objects>",
            "",
        ] {
            assert_eq!(find_script(&json!({"t": text})), None, "{text}");
        }
        assert_eq!(
            find_script(&json!({"n": 1, "b": true, "z": null, "l": [1.5, "ok"]})),
            None
        );
    }

    #[test]
    fn keys_are_checked() {
        let (path, snippet) = hit(&json!({"user": {"<script>": 1}}));
        assert_eq!(path, "data.user.<script>");
        assert_eq!(snippet, "<script");
    }

    #[test]
    fn paths_name_array_elements() {
        let data = json!({"items": [{"text": "fine"}, {"text": "<iframe src=x>"}]});
        assert_eq!(hit(&data), ("data.items.1.text".to_owned(), "<iframe".to_owned()));
        assert_eq!(hit(&json!("<embed>")), ("data".to_owned(), "<embed".to_owned()));
        assert_eq!(
            hit(&json!(["ok", "<embed>"])),
            ("data.1".to_owned(), "<embed".to_owned())
        );
    }

    #[test]
    fn stops_at_the_first_hit_in_document_order() {
        let data = json!({"a": ["x", "<object>"], "b": "<script>"});
        assert_eq!(hit(&data).0, "data.a.1");
    }

    #[test]
    fn snippet_is_at_most_40_chars() {
        let text = format!("<img src={} onerror=alert(1)>", "x".repeat(500));
        let (_, snippet) = hit(&json!(text));
        assert_eq!(snippet.chars().count(), 40);
        assert!(snippet.starts_with("<img src=xxx"));
    }

    #[test]
    fn long_keys_shorten_the_path() {
        let key = format!("{}<script>", "k".repeat(1000));
        let (path, _) = hit(&json!({ key: 1 }));
        assert_eq!(path.chars().count(), MAX_PATH_CHARS);
    }

    fn nested(depth: usize, leaf: Value) -> Value {
        (0..depth).fold(leaf, |v, _| json!({"n": v}))
    }

    #[test]
    fn depth_is_bounded() {
        // At the limit, content is still inspected.
        let (path, snippet) = hit(&nested(MAX_DEPTH, json!("<script>")));
        assert_eq!(snippet, "<script");
        assert_eq!(path.matches(".n").count(), MAX_DEPTH);
        assert_eq!(find_script(&nested(MAX_DEPTH, json!("clean"))), None);
        // Beyond it, nothing is inspected and the payload counts as suspicious.
        let (path, snippet) = hit(&nested(MAX_DEPTH + 1, json!("clean")));
        assert_eq!(snippet, "nesting deeper than 64 levels");
        assert_eq!(path.matches(".n").count(), MAX_DEPTH);
        // Empty containers at the limit are harmless.
        assert_eq!(find_script(&nested(MAX_DEPTH, json!({}))), None);
    }

    #[test]
    fn big_clean_payload() {
        let items: Vec<Value> = (0..10_000)
            .map(|i| json!({"id": i, "text": format!("message {i} about javascript & a < b"), "tags": ["x", "y"]}))
            .collect();
        assert_eq!(find_script(&json!({"items": items})), None);
    }

    #[test]
    fn entity_decoding() {
        assert_eq!(decode_entities("a &lt; b"), "a < b");
        assert_eq!(decode_entities("&#x3C;&#60&#0060;&#X3c;"), "<<<<");
        assert_eq!(decode_entities("AT&T &copy; & &#; &#x;"), "AT&T &copy; & &#; &#x;");
        assert!(matches!(decode_entities("no entities"), Cow::Borrowed(_)));
        assert!(matches!(decode_entities("AT&T"), Cow::Borrowed(_)));
        assert_eq!(decode_entities("&#99999999999;&#0;"), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode_entities("&amp;lt;"), "&lt;", "decoded once only");
        assert_eq!(decode_entities("é&lt;ü"), "é<ü");
        assert_eq!(decode_entities("&ltb &gt &quotx &Tab &colon"), "<b > \"x \t :");
    }
}
