//! The API's OpenAPI 3 description, built from the table that mounts the routes: a route is
//! added together with the description of its operations ([`Documented::route`]), so nothing
//! is served undocumented. A test asks the server for every documented operation and checks
//! that a handler answers (not the router's 404 or 405), so nothing documented is missing.
//!
//! Only what works is described: actions, formats and vocabularies that answer 501 are left
//! out, so a client generated from the document never meets them.

use crate::AppState;
use axum::Router;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

/// One operation of a path.
pub(crate) struct Op {
    method: &'static str,
    summary: &'static str,
    query: Vec<Value>,
    body: Option<Value>,
    multipart: bool,
    ok: Success,
    /// Other media types the success may come as (e.g. a file for some `format`).
    also: Vec<&'static str>,
    /// More responses: status, JSON schema of the body.
    extra: Vec<(&'static str, Value)>,
}

/// What a successful call answers.
enum Success {
    /// 200 with JSON of this schema.
    Json(Value),
    /// 201, empty, `Location` names the new resource.
    Created,
    /// 204, empty.
    NoContent,
    /// 200 with the file's bytes (`format=binary`) or its JSON description.
    FileOrJson(Value),
}

impl Op {
    fn new(method: &'static str, summary: &'static str, ok: Success) -> Self {
        Self {
            method,
            summary,
            query: Vec::new(),
            body: None,
            multipart: false,
            ok,
            also: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The success may also come as this media type (a file asked for by `format`).
    pub(crate) fn also(mut self, media_type: &'static str) -> Self {
        self.also.push(media_type);
        self
    }

    /// Another answer: `status` with a JSON body of `schema`.
    pub(crate) fn answers(mut self, status: &'static str, schema: Value) -> Self {
        self.extra.push((status, schema));
        self
    }

    /// `GET` answering JSON of `schema`.
    pub(crate) fn get(summary: &'static str, schema: Value) -> Self {
        Self::new("get", summary, Success::Json(schema))
    }

    /// `GET` answering a file with `format=binary`, JSON of `schema` otherwise.
    pub(crate) fn get_file(summary: &'static str, schema: Value) -> Self {
        Self::new("get", summary, Success::FileOrJson(schema)).query(&[(
            "format",
            json!({"type": "string", "enum": ["json", "binary"]}),
        )])
    }

    /// `POST` answering 201 with `Location`.
    pub(crate) fn post(summary: &'static str) -> Self {
        Self::new("post", summary, Success::Created)
    }

    /// `PATCH` answering 200 with JSON of `schema`.
    pub(crate) fn patch(summary: &'static str, schema: Value) -> Self {
        Self::new("patch", summary, Success::Json(schema))
    }

    /// `DELETE` answering 204.
    pub(crate) fn delete(summary: &'static str) -> Self {
        Self::new("delete", summary, Success::NoContent)
    }

    /// Adds query parameters (name, schema).
    pub(crate) fn query(mut self, params: &[(&str, Value)]) -> Self {
        for (name, schema) in params {
            self.query.push(json!({
                "name": name, "in": "query", "required": false, "schema": schema,
            }));
        }
        self
    }

    /// The JSON body's schema.
    pub(crate) fn body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self
    }

    /// A multipart body with a `file` (and an optional `comment`).
    pub(crate) fn multipart(mut self) -> Self {
        self.multipart = true;
        self
    }

    fn to_json(&self, path: &str, tag: &str) -> Value {
        let mut parameters: Vec<Value> = path_params(path);
        parameters.extend(self.query.iter().cloned());
        let error = json!({"$ref": "#/components/responses/Error"});
        let mut responses = Map::new();
        match &self.ok {
            Success::Json(schema) => {
                responses.insert(
                    "200".into(),
                    json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
                );
            }
            Success::Created => {
                responses.insert(
                    "201".into(),
                    json!({"description": "Created; the last segment of Location is the new id",
                           "headers": {"Location": {"schema": {"type": "string"}}}}),
                );
            }
            Success::NoContent => {
                responses.insert("204".into(), json!({"description": "Done"}));
            }
            Success::FileOrJson(schema) => {
                responses.insert(
                    "200".into(),
                    json!({"description": "The file with format=binary (served with its own media type), its description otherwise",
                           "content": {"application/json": {"schema": schema},
                                       "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                                       "*/*": {"schema": {"type": "string", "format": "binary"}}}}),
                );
                responses.insert(
                    "206".into(),
                    json!({"description": "A byte range of the file"}),
                );
                responses.insert(
                    "416".into(),
                    json!({"description": "The range is outside the file"}),
                );
            }
        }
        for media_type in &self.also {
            if let Some(content) = responses
                .get_mut("200")
                .and_then(|r| r.get_mut("content"))
                .and_then(Value::as_object_mut)
            {
                content.insert(
                    (*media_type).to_owned(),
                    json!({"schema": {"type": "string", "format": "binary"}}),
                );
            }
        }
        for (status, schema) in &self.extra {
            responses.insert(
                (*status).to_owned(),
                json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
            );
        }
        responses.insert("4XX".into(), error.clone());
        let mut op = json!({
            "summary": self.summary,
            "tags": [tag],
            "operationId": format!("{}{}", self.method, path.replace(['/', '{', '}'], "_")),
            "parameters": parameters,
            "responses": responses,
            "security": [{"apiKey": []}],
        });
        if let Some(body) = &self.body {
            op["requestBody"] =
                json!({"required": false, "content": {"application/json": {"schema": body}}});
        }
        if self.multipart {
            op["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}, "comment": {"type": "string"}},
            }}}});
        }
        op
    }
}

/// The parameters named in a path template, with what each accepts.
fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "entity_type" if path.ends_with("/stock") => {
                    json!({"type": "string", "enum": ["items"]})
                }
                "entity_type" if path.contains("/uploads") => {
                    json!({"type": "string", "enum": ["experiments", "items"]})
                }
                "entity_type" => json!({"type": "string", "enum": ENTITY_TYPES}),
                "vocabulary" => json!({"type": "string", "enum": VOCABULARIES}),
                "id" if path.starts_with("/teams/") => {
                    json!({"type": "string", "pattern": "^(current|[0-9]+)$"})
                }
                _ => json!({"type": "integer", "minimum": 1}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

const ENTITY_TYPES: [&str; 4] = [
    "experiments",
    "items",
    "experiments_templates",
    "items_types",
];

const VOCABULARIES: [&str; 5] = [
    "experiments_status",
    "experiments_categories",
    "items_status",
    "resources_categories",
    "items_categories",
];

/// A `$ref` to a component schema.
pub(crate) fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A list of a component schema.
pub(crate) fn list_of(name: &str) -> Value {
    json!({"type": "array", "items": schema(name)})
}

/// An object with these properties (others allowed).
pub(crate) fn object(properties: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({"type": "object", "properties": properties})
}

/// Schema shorthands.
pub(crate) fn string() -> Value {
    json!({"type": "string"})
}

/// An integer.
pub(crate) fn integer() -> Value {
    json!({"type": "integer"})
}

/// An integer or null.
fn nullable_integer() -> Value {
    json!({"type": "integer", "nullable": true})
}

/// A string or null.
fn nullable_string() -> Value {
    json!({"type": "string", "nullable": true})
}

/// One of these strings.
pub(crate) fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

/// Routes with their descriptions.
pub(crate) struct Documented {
    router: Router<AppState>,
    paths: Vec<(&'static str, &'static str, Vec<Op>)>,
}

impl Documented {
    /// Nothing yet, under `tag` (the section of the document).
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    /// Mounts `methods` at `path`, described by `ops` under `tag`.
    pub(crate) fn route(
        mut self,
        tag: &'static str,
        path: &'static str,
        methods: MethodRouter<AppState>,
        ops: Vec<Op>,
    ) -> Self {
        self.router = self.router.route(path, methods);
        self.paths.push((tag, path, ops));
        self
    }

    /// Adds another set of documented routes.
    pub(crate) fn merge(mut self, other: Documented) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// The router, and the OpenAPI document of everything in it.
    pub(crate) fn finish(self, version: &str) -> (Router<AppState>, Value) {
        let mut paths = Map::new();
        let mut tags: Vec<&str> = Vec::new();
        for (tag, path, ops) in &self.paths {
            if !tags.contains(tag) {
                tags.push(tag);
            }
            let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
            for op in ops {
                entry[op.method] = op.to_json(path, tag);
            }
        }
        let document = json!({
            "openapi": "3.0.3",
            "info": {
                "title": "Cahier API v2",
                "version": version,
                "description": "eLabFTW-compatible REST API v2 of Cahier. Send an API key (made on the settings page) as the raw value of the Authorization header. POST answers 201 with the new resource's URL in Location; PATCH answers the whole object; DELETE answers 204; errors are {code, message, description}. Dates are YYYY-MM-DD HH:MM:SS (UTC).",
            },
            "servers": [{"url": "/api/v2"}],
            "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
            "paths": paths,
            "components": components(),
        });
        (self.router, document)
    }
}

fn components() -> Value {
    let entity = object(&[
        ("id", integer()),
        ("uuid", string()),
        ("elabid", string()),
        ("title", string()),
        ("date", string()),
        ("body", string()),
        ("body_html", string()),
        ("content_type", integer()),
        ("category", nullable_integer()),
        ("category_title", nullable_string()),
        ("category_color", nullable_string()),
        ("status", nullable_integer()),
        ("status_title", nullable_string()),
        ("status_color", nullable_string()),
        ("rating", integer()),
        ("userid", integer()),
        ("team", integer()),
        ("fullname", string()),
        ("created_at", string()),
        ("modified_at", string()),
        ("lastchangeby", integer()),
        ("locked", integer()),
        ("lockedby", nullable_integer()),
        ("locked_at", nullable_string()),
        ("canread_base", integer()),
        ("canwrite_base", integer()),
        ("canread", string()),
        ("canwrite", string()),
        // Resources only: who may book it (eLabFTW's canbook; without a rule of its own or
        // its category's, the same as canread) and, when it tracks stock, its state.
        ("canbook_base", integer()),
        ("canbook", string()),
        ("stock", json!({"$ref": "#/components/schemas/Stock"})),
        ("metadata", nullable_string()),
        ("state", integer()),
        ("tags", nullable_string()),
        ("heads", string()),
        ("page", string()),
        ("type", string()),
    ]);
    let mut entity = entity;
    entity["required"] = json!(["id", "title", "body", "date", "userid", "state"]);
    let with_id = |required_id: bool| {
        let mut o = object(&[("id", integer())]);
        if required_id {
            o["required"] = json!(["id"]);
        }
        o
    };
    json!({
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        "schemas": {
            "Entity": entity,
            "Comment": with_id(true),
            "Step": with_id(true),
            "Tag": with_id(false),
            "TeamTag": object(&[("id", integer()), ("tag", string()), ("item_count", integer()), ("is_favorite", integer()), ("team", integer())]),
            "Link": object(&[("entityid", integer()), ("title", string())]),
            "Revision": with_id(true),
            "Upload": object(&[("id", integer()), ("real_name", string()), ("filesize", integer()), ("hash", string())]),
            "User": object(&[("userid", integer()), ("firstname", string()), ("lastname", string())]),
            "Team": with_id(true),
            "TeamGroup": with_id(true),
            "Term": with_id(true),
            "ExportJob": object(&[("id", integer()), ("state", string()), ("total", integer()), ("done", integer())]),
            "ImportReport": {"type": "object"},
            "Stock": object(&[("unit", string()), ("quantity", json!({"type": "number"})), ("threshold", json!({"type": "number", "nullable": true})), ("is_low", json!({"type": "boolean"})), ("is_negative", json!({"type": "boolean"})), ("events", json!({"type": "array", "description": "Only on the single item and /stock, not in list rows"}))]),
            "Event": object(&[("id", integer()), ("item", integer()), ("start", json!({"type": "string", "description": "ISO 8601 with the caller's UTC offset (2026-12-01T10:00:00+01:00)"})), ("end", json!({"type": "string", "description": "ISO 8601 with the caller's UTC offset"})), ("title", string()), ("state", string())]),
            "ApiKey": with_id(true),
            "Info": object(&[("items_count", integer()), ("experiments_count", integer()), ("teams_count", integer())]),
            "UnfinishedSteps": object(&[("experiments", json!({"type": "array"})), ("items", json!({"type": "array"}))]),
            "Error": {
                "type": "object",
                "required": ["code", "message", "description"],
                "properties": {"code": integer(), "message": string(), "description": string()},
            },
        },
        "responses": {
            "Error": {
                "description": "The request was refused; the description says why and what to do",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    })
}

/// The list parameters shared by every entity list.
pub(crate) fn list_params() -> Vec<(&'static str, Value)> {
    vec![
        ("q", string()),
        ("extended", string()),
        (
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 10000}),
        ),
        ("offset", json!({"type": "integer", "minimum": 0})),
        ("order", one_of(&["lastchange", "date", "title", "id"])),
        ("sort", one_of(&["asc", "desc"])),
        (
            "cat",
            json!({"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
        ),
        (
            "category",
            json!({"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
        ),
        (
            "status",
            json!({"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
        ),
        (
            "owner",
            json!({"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
        ),
        (
            "state",
            json!({"type": "string", "pattern": "^[1-3](,[1-3])*$"}),
        ),
        ("tags[]", string()),
    ]
}

/// `object` with one more property.
pub(crate) fn with_property(mut object: Value, name: &str, schema: Value) -> Value {
    object["properties"][name] = schema;
    object
}

/// The fields an entity is created or changed with.
pub(crate) fn entity_fields(actions: &[&str]) -> Value {
    let mut fields = vec![
        ("title", string()),
        ("body", string()),
        ("date", json!({"type": "string", "format": "date"})),
        ("tags", json!({"type": "array", "items": string()})),
        ("category", integer()),
        ("status", integer()),
        (
            "rating",
            json!({"type": "integer", "minimum": 0, "maximum": 5}),
        ),
        ("content_type", json!({"type": "integer", "enum": [1, 2]})),
        (
            "canread_base",
            json!({"type": "integer", "enum": [10, 20, 30, 40, 50]}),
        ),
        (
            "canwrite_base",
            json!({"type": "integer", "enum": [10, 20, 30, 40, 50]}),
        ),
        ("metadata", json!({"oneOf": [string(), {"type": "object"}]})),
    ];
    if !actions.is_empty() {
        fields.push(("action", one_of(actions)));
    }
    object(&fields)
}

static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();

/// Keeps the document made with the routes (the routes do not change while the process runs).
pub(crate) fn remember(document: Value) {
    let _ = DOCUMENT.set(document);
}

/// The API's document: the one kept when the routes were made, else made now.
pub(crate) fn document(version: &str) -> &'static Value {
    DOCUMENT.get_or_init(|| super::documented(version).1)
}
