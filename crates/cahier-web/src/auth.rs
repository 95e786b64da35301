//! Who is calling: session cookies for the UI, API keys (or a session plus CSRF header) for the
//! API; CSRF protection for every state-changing request; and the caller's language.

use crate::AppState;
use crate::error::AppError;
use crate::i18n::Lang;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cahier_core::Subject;
use cahier_store::accounts::User;
use cahier_store::grant_cache::Check;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "cahier_session";
/// Name of the CSRF cookie (double-submit: forms and scripts echo its value).
pub const CSRF_COOKIE: &str = "cahier_csrf";
/// Name of the language cookie for visitors who are not signed in.
pub const LANG_COOKIE: &str = "cahier_lang";
/// Form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Header that carries the CSRF token for scripts.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Reads a cookie from request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Builds a `Set-Cookie` value. `max_age` of `None` makes a session cookie; `Some(0)` deletes.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<i64>,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The CSRF token of this request, put in the request by [`csrf_guard`].
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CsrfToken>()
            .cloned()
            .ok_or_else(|| AppError::Internal("csrf token missing".into()))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Makes sure every browser has a CSRF cookie, and refuses state-changing requests whose form
/// field or header does not echo it. API calls authenticated by an API key are exempt (and
/// get no cookie): a browser never sends that header on its own. So are API calls without a session cookie on
/// a lab instance: they carry no credentials a forged request could borrow, and get 401 from
/// the handler. (A field replica signs every visitor in, so there nothing is exempt.)
pub async fn csrf_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A script calling the API with a key: no form to protect and no browser to keep a cookie,
    // so no token (making one drew 32 random bytes and set a cookie on every answer).
    if request.uri().path().starts_with("/api/")
        && request.headers().contains_key(header::AUTHORIZATION)
    {
        return next.run(request).await;
    }
    let existing = cookie(request.headers(), CSRF_COOKIE).filter(|t| t.len() == 64);
    let is_new = existing.is_none();
    let token = existing
        .clone()
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(CsrfToken(token.clone()));
    let is_api_exempt = parts.uri.path().starts_with("/api/")
        && (parts.headers.contains_key(header::AUTHORIZATION)
            || (cookie(&parts.headers, SESSION_COOKIE).is_none() && state.replica.is_none()));
    let request = if is_safe(&parts.method) || is_api_exempt {
        Request::from_parts(parts, body)
    } else {
        let Some(expected) = existing else {
            return csrf_refusal(&parts);
        };
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let is_multipart = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        let (given, body) = match header_token {
            Some(t) => (Some(t), body),
            // File uploads without JavaScript: the token rides in the form's action URL, as
            // reading it from the body would mean buffering the whole file first.
            None if is_multipart => {
                let field = parts.uri.query().and_then(|q| {
                    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                        .ok()
                        .and_then(|pairs| {
                            pairs
                                .into_iter()
                                .find(|(k, _)| k == CSRF_FIELD)
                                .map(|(_, v)| v)
                        })
                });
                (field, body)
            }
            None if is_form => {
                let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        return AppError::TooLarge("the form is too large".into()).into_response();
                    }
                };
                let field = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                    .ok()
                    .and_then(|pairs| {
                        pairs
                            .into_iter()
                            .find(|(k, _)| k == CSRF_FIELD)
                            .map(|(_, v)| v)
                    });
                (field, axum::body::Body::from(bytes))
            }
            None => (None, body),
        };
        match given {
            Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => {
                Request::from_parts(parts, body)
            }
            _ => return csrf_refusal(&parts),
        }
    };
    let mut response = next.run(request).await;
    if is_new {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                CSRF_COOKIE,
                &token,
                Some(365 * 24 * 3600),
                true,
                state.config.is_https(),
            ),
        );
    }
    response
}

fn csrf_refusal(parts: &Parts) -> Response {
    let error = AppError::Forbidden(
        "this form has expired or did not come from Cahier; reload the page and try again".into(),
    );
    if parts.uri.path().starts_with("/api/") {
        error.into_response()
    } else {
        crate::ui::error_page(&error, Lang::from_headers(&parts.headers, None)).into_response()
    }
}

/// A signed-in user of the web UI, with what the policy and pages need.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account.
    pub user: User,
    /// Memberships for the policy.
    pub subject: Subject,
    /// Interface language.
    pub lang: Lang,
    /// The CSRF token to embed in forms.
    pub csrf: String,
}

impl SignedIn {
    /// The team the user works in now: their selection if still a member, else their first team.
    pub fn current_team(&self) -> Option<i64> {
        self.user
            .current_team
            .filter(|t| self.subject.is_member(*t))
            .or_else(|| self.subject.teams.first().map(|m| m.team_id))
    }

    /// Whether the user administers the current team.
    pub fn is_team_admin(&self) -> bool {
        self.current_team()
            .is_some_and(|t| self.subject.is_team_admin(t))
    }
}

async fn session_from_parts(parts: &Parts, state: &AppState) -> Result<Option<SignedIn>, AppError> {
    let session_user = match cookie(&parts.headers, SESSION_COOKIE) {
        Some(token) => state.store.session_user(&token).await?,
        None => None,
    };
    // A field replica serves one person on their own laptop: they are signed in as the
    // replica's user (the replica database itself is theirs).
    let user = match (session_user, &state.replica) {
        (Some(user), _) => user,
        (None, Some(replica)) => state.store.user(replica.user_id).await?,
        (None, None) => return Ok(None),
    };
    let subject = state.store.subject(user.id).await?;
    let lang = Lang::from_headers(&parts.headers, user.lang.as_deref());
    let csrf = parts
        .extensions
        .get::<CsrfToken>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    Ok(Some(SignedIn {
        user,
        subject,
        lang,
        csrf,
    }))
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match session_from_parts(parts, state).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => {
                // Scripts (autosave) get a 401 they can explain, not a redirect to a page.
                let wants_json = parts
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("application/json"));
                if wants_json {
                    let lang = Lang::from_headers(&parts.headers, None);
                    return Err(
                        AppError::Unauthorized(lang.t("entity.session_ended").into())
                            .into_response(),
                    );
                }
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let target = format!(
                    "/login?next={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                );
                Err(axum::response::Redirect::to(&target).into_response())
            }
            Err(error) => Err(crate::ui::error_page(
                &error,
                Lang::from_headers(&parts.headers, None),
            )
            .into_response()),
        }
    }
}

/// A visitor who may or may not be signed in.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// The session, if signed in.
    pub session: Option<SignedIn>,
    /// Interface language.
    pub lang: Lang,
    /// CSRF token for forms.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_from_parts(parts, state).await.map_err(|e| {
            crate::ui::error_page(&e, Lang::from_headers(&parts.headers, None)).into_response()
        })?;
        let cookie_lang = cookie(&parts.headers, LANG_COOKIE);
        let lang = match &session {
            Some(s) => s.lang,
            None => Lang::from_headers(&parts.headers, cookie_lang.as_deref()),
        };
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        Ok(Visitor {
            session,
            lang,
            csrf,
        })
    }
}

/// The caller of an API request: a user acting through an API key or their browser session.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The account.
    pub user: User,
    /// Memberships for the policy.
    pub subject: Subject,
    /// The team requests act in (the key's team, or the session's current team).
    pub team_id: Option<i64>,
    /// Whether this caller may change things (read-only keys may not).
    pub can_write: bool,
}

impl ApiCaller {
    /// Refuses writes with a read-only key.
    pub fn require_write(&self) -> Result<(), AppError> {
        if self.can_write {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "this API key is read-only; create a read-write key to change data".into(),
            ))
        }
    }

    /// The team to create things in.
    pub fn team(&self) -> Result<i64, AppError> {
        self.team_id.ok_or_else(|| {
            AppError::invalid(
                "team",
                "your account belongs to no team; ask an admin to add you",
            )
        })
    }
}

/// The caller of an API request as [`ApiCaller`], except that an API key's grant may come
/// from memory unconfirmed: its `auth_epoch` (`cahier_store::grant_cache`) has not been
/// compared yet. Only for a handler whose first statement reads the epoch and says whether it
/// moved (the single-entity `GET`); anything else must [`UncheckedApiCaller::confirm`] first.
#[derive(Debug, Clone)]
pub struct UncheckedApiCaller {
    /// The caller, as of `unconfirmed_epoch`.
    pub caller: ApiCaller,
    /// The epoch the grant was read at; `None` when already confirmed by this request.
    pub unconfirmed_epoch: Option<i64>,
    key: Option<String>,
}

impl UncheckedApiCaller {
    /// The caller, confirmed against the database now (one statement when nothing changed;
    /// the key is read again when something did).
    pub async fn confirm(self, state: &AppState) -> Result<ApiCaller, AppError> {
        match (self.unconfirmed_epoch, self.key) {
            (Some(_), Some(key)) => Ok(api_key_caller(state, &key, Check::Now).await?.caller),
            _ => Ok(self.caller),
        }
    }
}

fn api_key_of(value: &HeaderValue) -> Result<String, AppError> {
    let key = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("the Authorization header is not text".into()))?;
    Ok(key.strip_prefix("Bearer ").unwrap_or(key).to_owned())
}

async fn api_key_caller(
    state: &AppState,
    key: &str,
    check: Check,
) -> Result<UncheckedApiCaller, AppError> {
    let auth = state.store.api_auth(key, check).await?.ok_or_else(|| {
        AppError::Unauthorized("no valid API key in the Authorization header".into())
    })?;
    Ok(UncheckedApiCaller {
        caller: ApiCaller {
            user: auth.grant.user,
            subject: auth.subject,
            team_id: Some(auth.grant.team_id),
            can_write: auth.grant.can_write,
        },
        unconfirmed_epoch: auth.unconfirmed_epoch,
        key: Some(key.to_owned()),
    })
}

async fn session_caller(parts: &Parts, state: &AppState) -> Result<ApiCaller, AppError> {
    match session_from_parts(parts, state).await? {
        Some(session) => {
            let team_id = session.current_team();
            Ok(ApiCaller {
                user: session.user,
                subject: session.subject,
                team_id,
                can_write: true,
            })
        }
        None => Err(AppError::Unauthorized(
            "send an API key in the Authorization header (create one in Settings)".into(),
        )),
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let key = api_key_of(value)?;
            return Ok(api_key_caller(state, &key, Check::Now).await?.caller);
        }
        session_caller(parts, state).await
    }
}

impl FromRequestParts<AppState> for UncheckedApiCaller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let key = api_key_of(value)?;
            return api_key_caller(state, &key, Check::Deferred).await;
        }
        Ok(UncheckedApiCaller {
            caller: session_caller(parts, state).await?,
            unconfirmed_epoch: None,
            key: None,
        })
    }
}
