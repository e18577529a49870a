//! The S3 API's XML: documents written as S3 writes them, the few request documents S3
//! clients send (a completion's part list, a batch delete, CORS rules) read into a small
//! tree, and the two date formats S3 uses.

use quick_xml::events::Event;

/// An XML element: its local name, its text, its children.
#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// The deepest a request document may nest.
const MAX_DEPTH: usize = 16;

/// Parses a request document; `None` if it is not well-formed XML.
pub fn parse(bytes: &[u8]) -> Option<Element> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut buffer = Vec::new();
    loop {
        match reader.read_event_into(&mut buffer).ok()? {
            Event::Start(start) => {
                if stack.len() > MAX_DEPTH {
                    return None;
                }
                let name = String::from_utf8(start.local_name().as_ref().to_vec()).ok()?;
                stack.push(Element { name, ..Element::default() });
            }
            Event::Empty(empty) => {
                let name = String::from_utf8(empty.local_name().as_ref().to_vec()).ok()?;
                stack.last_mut()?.children.push(Element { name, ..Element::default() });
            }
            Event::End(_) => {
                let done = stack.pop()?;
                stack.last_mut()?.children.push(done);
            }
            Event::Text(text) => {
                let text = text.decode().ok()?;
                let text = quick_xml::escape::unescape(&text).ok()?;
                stack.last_mut()?.text.push_str(&text);
            }
            Event::CData(data) => stack.last_mut()?.text.push_str(std::str::from_utf8(&data).ok()?),
            Event::GeneralRef(reference) => {
                let name = reference.decode().ok()?;
                let entity = format!("&{name};");
                let text = quick_xml::escape::unescape(&entity).ok()?;
                stack.last_mut()?.text.push_str(&text);
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    let mut root = stack.pop()?;
    if !stack.is_empty() {
        return None;
    }
    root.children.pop()
}

/// Text escaped for an XML element.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// A document being written: `<?xml …?>`, then elements.
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new(root: &str) -> Writer {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<{root} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));
        Writer { out }
    }

    /// `<name>text</name>`, the text escaped.
    pub fn field(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(&format!("<{name}>{}</{name}>", escape(&text.to_string())));
        self
    }

    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push_str(&format!("<{name}>"));
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str(&format!("</{name}>"));
        self
    }

    pub fn finish(mut self, root: &str) -> String {
        self.out.push_str(&format!("</{root}>"));
        self.out
    }
}

/// Unix milliseconds as S3 writes times in XML: `2026-12-05T07:32:02.000Z`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// Unix milliseconds as an HTTP date (`Last-Modified`).
pub fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// An HTTP date as Unix seconds.
pub fn parse_http_date(text: &str) -> Option<u64> {
    httpdate::parse_http_date(text).ok()?.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_s3_writes_them() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1796450400` → Sat Dec  5 06:00:00 UTC 2026
        assert_eq!(iso8601(1_796_450_400_123), "2026-12-05T06:00:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(http_date(1_796_450_400_000), "Sat, 05 Dec 2026 06:00:00 GMT");
        assert_eq!(parse_http_date("Sat, 05 Dec 2026 06:00:00 GMT"), Some(1_796_450_400));
    }

    #[test]
    fn request_documents_parse_and_malformed_ones_do_not() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
            <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Part><ETag>"abc"</ETag><PartNumber>1</PartNumber></Part>
              <Part><ETag>&quot;def&quot;</ETag><PartNumber>2</PartNumber></Part>
            </CompleteMultipartUpload>"#;
        let root = parse(doc).expect("parses");
        assert_eq!(root.name, "CompleteMultipartUpload");
        let parts: Vec<(&str, &str)> = root
            .children("Part")
            .map(|p| (p.text_of("PartNumber").unwrap_or(""), p.text_of("ETag").unwrap_or("")))
            .collect();
        assert_eq!(parts, [("1", "\"abc\""), ("2", "\"def\"")]);
        assert!(parse(b"<a><b></a>").is_none());
        assert!(parse(b"<Delete><Object><Key>a &amp; b</Key></Object><Quiet/></Delete>").is_some_and(|d| d
            .child("Object")
            .and_then(|o| o.text_of("Key"))
            == Some("a & b")
            && d.child("Quiet").is_some()));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(deep.as_bytes()).is_none(), "nesting is bounded");
        let mut writer = Writer::new("Root");
        writer.field("Key", "a<b&c");
        assert!(writer.finish("Root").ends_with("<Key>a&lt;b&amp;c</Key></Root>"));
    }
}
