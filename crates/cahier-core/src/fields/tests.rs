use super::*;
use serde_json::json;

/// Metadata in the shape eLabFTW 5.x writes (every field type and property found in the
/// exports of `shared/fixtures/eln/elabftw`, values of our own).
const ELABFTW_METADATA: &str = r#"{"elabftw": {"display_main_text": true, "extra_fields_groups": [{"id": 1, "name": "Conditions"}, {"id": 2, "name": "Sample"}]},
 "extra_fields": {
  "Temperature": {"type": "number", "unit": "°C", "units": ["°C", "K"], "value": "21.5", "group_id": 1, "position": 1, "description": "room", "required": true},
  "Count": {"type": "number", "unit": "", "units": [], "value": "12", "group_id": 1},
  "Sample type": {"type": "select", "value": "soil", "options": ["soil", "water", "air"], "group_id": 2},
  "Kits": {"type": "select", "value": ["A", "C"], "options": ["A", "B", "C"], "allow_multi_values": true},
  "Collected on": {"type": "date", "value": "2024-07-14", "group_id": 2},
  "Collected at": {"type": "datetime-local", "value": "2024-07-14T13:37"},
  "Tea time": {"type": "time", "value": "17:00"},
  "Checked": {"type": "checkbox", "value": "on"},
  "Not checked": {"type": "checkbox", "value": ""},
  "Site": {"type": "url", "value": "https://www.example.org/site", "readonly": true},
  "Contact": {"type": "email", "value": "louise@example.org"},
  "Protocol": {"type": "experiments", "value": 57},
  "Reagent": {"type": "items", "value": 208},
  "Operator": {"type": "users", "value": 1},
  "Answer": {"type": "radio", "value": "Oui", "options": ["Oui", "Non", "Peut-être"]},
  "Lost": {"type": "text", "value": "I am lost!", "group_id": "19", "blank_value_on_duplicate": true},
  "Untyped": {"value": "plain"}
 }}"#;

#[test]
fn elabftw_metadata_round_trips_unchanged() {
    let parsed = Metadata::parse(ELABFTW_METADATA).expect("parses");
    assert_eq!(parsed.fields.len(), 17);
    let original: Value = serde_json::from_str(ELABFTW_METADATA).expect("json");
    assert_eq!(parsed.to_json(), original);
    let again = Metadata::parse(&parsed.to_json_string().expect("not empty")).expect("parses");
    assert_eq!(again, parsed);
}

#[test]
fn accessors_read_elabftw_properties() {
    let m = Metadata::parse(ELABFTW_METADATA).expect("parses");
    let t = m.field("Temperature").expect("field");
    assert_eq!(t.field_type(), "number");
    assert_eq!(t.unit(), "°C");
    assert_eq!(t.units(), vec!["°C", "K"]);
    assert!(t.required());
    assert_eq!(t.group_id(), Some(1));
    assert_eq!(t.number(), Some(21.5));
    assert_eq!(m.fields[0].name, "Temperature", "position 1 comes first");
    assert_eq!(m.field("Lost").and_then(Field::group_id), Some(19));
    assert_eq!(m.field("Untyped").map(Field::field_type), Some("text"));
    assert_eq!(
        m.field("Kits").map(Field::value_texts),
        Some(vec!["A".to_owned(), "C".to_owned()])
    );
    assert_eq!(
        m.field("Reagent").and_then(Field::link_targets),
        Some((LinkKind::Resource, vec![208]))
    );
    assert_eq!(
        m.groups(),
        vec![(1, "Conditions".to_owned()), (2, "Sample".to_owned())]
    );
}

fn field(props: Value) -> Field {
    match props {
        Value::Object(props) => Field {
            name: "F".into(),
            props,
        },
        _ => Field::new("F", "text"),
    }
}

#[test]
fn values_are_checked_against_their_type() {
    let cases = [
        (json!({"type": "number"}), json!("abc"), false),
        (json!({"type": "number"}), json!("4.5"), true),
        (json!({"type": "number"}), json!(20), true),
        (json!({"type": "date"}), json!("2024-02-30"), false),
        (json!({"type": "date"}), json!("14/07/2024"), false),
        (json!({"type": "date"}), json!("2024-07-14"), true),
        (
            json!({"type": "datetime-local"}),
            json!("2024-07-14T25:00"),
            false,
        ),
        (
            json!({"type": "datetime-local"}),
            json!("2024-07-14T13:37"),
            true,
        ),
        (json!({"type": "time"}), json!("7pm"), false),
        (json!({"type": "time"}), json!("19:00"), true),
        (json!({"type": "email"}), json!("nobody"), false),
        (json!({"type": "email"}), json!("a@b.fr"), true),
        (json!({"type": "url"}), json!("javascript:alert(1)"), false),
        (json!({"type": "url"}), json!("https://x.org"), true),
        (
            json!({"type": "select", "options": ["a", "b"]}),
            json!("c"),
            false,
        ),
        (
            json!({"type": "select", "options": ["a", "b"]}),
            json!("b"),
            true,
        ),
        (
            json!({"type": "select", "options": ["a", "b"]}),
            json!(["a", "b"]),
            false,
        ),
        (
            json!({"type": "select", "options": ["a", "b"], "allow_multi_values": true}),
            json!(["a", "b"]),
            true,
        ),
        (
            json!({"type": "select", "options": ["a", "b"], "allow_multi_values": true}),
            json!(["a", "z"]),
            false,
        ),
        (json!({"type": "checkbox"}), json!("maybe"), false),
        (json!({"type": "checkbox"}), json!(true), true),
        (json!({"type": "items"}), json!("soil"), false),
        (json!({"type": "items"}), json!(12), true),
        (json!({"type": "text"}), json!({"a": 1}), false),
        (json!({"type": "text"}), json!(""), true),
    ];
    for (definition, value, ok) in cases {
        let result = field(definition.clone()).check_value(&value);
        assert_eq!(result.is_ok(), ok, "{definition} with {value}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e.name, "F", "the error names the field");
        }
    }
}

#[test]
fn definitions_are_checked() {
    assert!(field(json!({"type": "colour"})).check_definition().is_err());
    let bad_unit = field(json!({"type": "number", "unit": "mg", "units": ["g", "kg"]}));
    let e = bad_unit
        .check_definition()
        .expect_err("unit not among units");
    assert!(e.message.contains("mg"), "{e}");
    assert!(
        field(json!({"type": "select", "options": "a,b"}))
            .check_definition()
            .is_err()
    );
    assert!(Metadata::parse("[1]").is_err());
    assert!(Metadata::parse(r#"{"extra_fields": {"A": 3}}"#).is_err());
}

#[test]
fn required_fields_must_be_filled() {
    let mut f = field(json!({"type": "text", "required": true, "value": ""}));
    assert!(f.check_required().is_err());
    f.props.insert("value".into(), json!("x"));
    assert!(f.check_required().is_ok());
}

#[test]
fn checkbox_and_empty_values_are_normalised() {
    let f = field(json!({"type": "checkbox"}));
    assert_eq!(f.check_value(&json!(true)).ok(), Some(json!("on")));
    assert_eq!(f.check_value(&json!(false)).ok(), Some(json!("")));
    assert_eq!(f.check_value(&Value::Null).ok(), Some(json!("")));
}

#[test]
fn copies_blank_the_values_marked_so() {
    let m = Metadata::parse(ELABFTW_METADATA).expect("parses");
    let copy = m.for_copy();
    assert_eq!(
        copy.field("Lost").map(Field::display_value),
        Some(String::new())
    );
    assert_eq!(
        copy.field("Count").map(Field::display_value),
        Some("12".into())
    );
}

#[test]
fn text_values_are_stored_trimmed() {
    let f = field(json!({"type": "number"}));
    assert_eq!(f.check_value(&json!(" 12 ")).ok(), Some(json!("12")));
    assert_eq!(f.check_value(&json!(12)).ok(), Some(json!(12)));
}
