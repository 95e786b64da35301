//! Turns a user's body (Markdown, or HTML from older systems) into HTML that is safe to show in
//! our origin. Every path that displays a body goes through [`render_body`].

use pulldown_cmark::{Options, Parser, html};
use std::collections::HashSet;

/// How a body is written, with eLabFTW's codes (`content_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// Raw HTML (code 1), sanitised before display.
    Html,
    /// Markdown (code 2), the default.
    Markdown,
}

impl ContentType {
    /// From eLabFTW's integer code; anything unknown is Markdown.
    pub fn from_code(code: i64) -> Self {
        if code == 1 {
            Self::Html
        } else {
            Self::Markdown
        }
    }
    /// eLabFTW's integer code.
    pub fn code(self) -> i64 {
        match self {
            Self::Html => 1,
            Self::Markdown => 2,
        }
    }
}

/// Renders a body to sanitised HTML.
pub fn render_body(body: &str, content_type: ContentType) -> String {
    match content_type {
        ContentType::Markdown => render_markdown(body),
        ContentType::Html => sanitize_html(body),
    }
}

/// Renders GitHub-flavoured Markdown (tables, task lists, strikethrough, footnotes), then
/// sanitises the result: raw HTML inside Markdown is allowed but cleaned like any HTML body.
pub fn render_markdown(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES;
    let parser = Parser::new_ext(markdown, options);
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 4);
    html::push_html(&mut out, parser);
    sanitize_html(&out)
}

/// Removes everything from `html` that could run code or escape its box: scripts, event
/// handlers, `javascript:` URLs, forms, frames and styles. Keeps tables, images, links and the
/// disabled checkboxes of task lists.
pub fn sanitize_html(html: &str) -> String {
    let mut builder = ammonia::Builder::default();
    builder
        .add_tags([
            "input",
            "del",
            "s",
            "section",
            "sup",
            "sub",
            "mark",
            "figure",
            "figcaption",
        ])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .add_tag_attributes("td", ["align", "style"])
        .add_tag_attributes("th", ["align", "style"])
        .add_tag_attributes("img", ["alt", "title", "width", "height", "src"])
        .add_generic_attributes(["id"])
        .id_prefix(Some("user-content-"))
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            // Task-list checkboxes are shown, never editable inside the rendered body.
            ("input", "type") if value != "checkbox" => None,
            // Only alignment survives from inline styles (pulldown-cmark aligns table cells).
            (_, "style") => {
                let allowed: HashSet<&str> = [
                    "text-align: left",
                    "text-align: center",
                    "text-align: right",
                ]
                .into();
                allowed
                    .contains(value.trim_end_matches(';'))
                    .then(|| value.into())
            }
            _ => Some(value.into()),
        })
        .set_tag_attribute_value("input", "disabled", "");
    builder.clean(html).to_string()
}

/// Plain text of a body for the full-text index: the Markdown source is indexed as written,
/// HTML bodies lose their tags.
pub fn index_text(body: &str, content_type: ContentType) -> String {
    match content_type {
        ContentType::Markdown => body.to_owned(),
        ContentType::Html => ammonia::Builder::empty().clean(body).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_github_tables_and_task_lists() {
        let html = render_markdown("| a | b |\n|---|--:|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n");
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("<td>1</td>"), "{html}");
        assert!(html.contains("text-align: right"), "{html}");
        assert!(html.contains(r#"type="checkbox""#), "{html}");
        assert!(html.contains("checked"), "{html}");
        assert!(html.contains("disabled"), "{html}");
    }

    #[test]
    fn strips_scripts_handlers_and_javascript_urls() {
        let html = render_markdown(
            "<script>alert(1)</script><img src=x onerror=alert(2)><input type=text value=a>\n\n[x](javascript:alert(3))",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(html.contains(">x</a>"), "{html}");
        assert!(!html.contains(r#"type="text""#), "{html}");
    }

    #[test]
    fn html_bodies_are_sanitised_too() {
        let html = render_body(
            r#"<p style="position:fixed">hi</p><iframe src="x"></iframe>"#,
            ContentType::Html,
        );
        assert_eq!(html, "<p>hi</p>");
    }

    #[test]
    fn index_text_drops_html_tags() {
        assert_eq!(
            index_text("<b>bold</b> text", ContentType::Html),
            "bold text"
        );
    }
}
