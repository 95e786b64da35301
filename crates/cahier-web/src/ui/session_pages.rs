//! Signing in and out, first-run setup, and choosing the interface language.

use super::{PageCtx, UiResultExt, render};
use crate::AppState;
use crate::auth::{LANG_COOKIE, SESSION_COOKIE, Visitor, cookie, set_cookie};
use crate::error::AppError;
use crate::i18n::Lang;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_store::StoreError;
use cahier_store::accounts::NewUser;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(setup_page).post(setup))
        .route("/language", post(set_language))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    p: PageCtx,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
    msg: Option<String>,
}

/// Only local paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

async fn login_page(visitor: Visitor, Query(query): Query<NextQuery>) -> Response {
    if visitor.session.is_some() {
        return Redirect::to(&safe_next(query.next.as_deref())).into_response();
    }
    let notice = (query.msg.as_deref() == Some("signed_out")).then_some("login.signed_out");
    render(&LoginPage {
        p: PageCtx::anonymous(visitor.lang, &visitor.csrf, "login.title").with_notice(notice),
        email: String::new(),
        next: safe_next(query.next.as_deref()),
        error: None,
    })
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

fn client_address(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "direct".to_owned())
}

async fn login(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = client_address(&headers);
    match state
        .store
        .verify_login(&form.email, &form.password, &client)
        .await
    {
        Ok(user) => match state
            .store
            .create_session_from(user.id, Some(&client))
            .await
        {
            Ok(token) => {
                let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
                response.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(SESSION_COOKIE, &token, None, true, state.config.is_https()),
                );
                tracing::info!(user_id = user.id, "signed in");
                response
            }
            Err(error) => super::error_page(&error.into(), visitor.lang),
        },
        Err(error) => {
            let (status, key) = match &error {
                StoreError::Throttled { .. } => {
                    (axum::http::StatusCode::TOO_MANY_REQUESTS, "login.throttled")
                }
                StoreError::Invalid { .. } => {
                    (axum::http::StatusCode::UNAUTHORIZED, "login.failed")
                }
                _ => return super::error_page(&AppError::from(error), visitor.lang),
            };
            tracing::info!(email_len = form.email.len(), "failed sign-in");
            let page = LoginPage {
                p: PageCtx::anonymous(visitor.lang, &visitor.csrf, "login.title"),
                email: form.email,
                next: safe_next(form.next.as_deref()),
                error: Some(visitor.lang.t(key).to_owned()),
            };
            (status, render(&page)).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(error) = state.store.delete_session(&token).await
    {
        tracing::warn!(error = %error, "could not delete session");
    }
    let mut response = Redirect::to("/login?msg=signed_out").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), true, state.config.is_https()),
    );
    response
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    p: PageCtx,
    token: String,
    form: SetupForm,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    firstname: String,
    #[serde(default)]
    lastname: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    team: String,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn setup_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<TokenQuery>,
) -> Response {
    let token = query.token.unwrap_or_default();
    let valid = state.store.check_setup_token(&token).await.unwrap_or(false);
    if !valid {
        return super::error_page(
            &AppError::Forbidden(visitor.lang.t("setup.invalid").into()),
            visitor.lang,
        );
    }
    render(&SetupPage {
        p: PageCtx::anonymous(visitor.lang, &visitor.csrf, "setup.title"),
        token,
        form: SetupForm::default(),
        error: None,
    })
}

async fn setup(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SetupForm>,
) -> Response {
    let new = NewUser {
        email: form.email.clone(),
        firstname: form.firstname.clone(),
        lastname: form.lastname.clone(),
        password: Some(form.password.clone()),
        is_sysadmin: true,
    };
    let team = if form.team.trim().is_empty() {
        "Lab".to_owned()
    } else {
        form.team.clone()
    };
    match state.store.complete_setup(&form.token, new, &team).await {
        Ok(user_id) => match state.store.create_session(user_id).await {
            Ok(token) => {
                let mut response = Redirect::to("/").into_response();
                response.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(SESSION_COOKIE, &token, None, true, state.config.is_https()),
                );
                response
            }
            Err(error) => super::error_page(&error.into(), visitor.lang),
        },
        Err(StoreError::Invalid { field, message }) => {
            let page = SetupPage {
                p: PageCtx::anonymous(visitor.lang, &visitor.csrf, "setup.title"),
                token: form.token.clone(),
                error: Some(format!("{field}: {message}")),
                form: SetupForm {
                    password: String::new(),
                    ..form
                },
            };
            (axum::http::StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(error) => super::error_page(&error.into(), visitor.lang),
    }
}

#[derive(Debug, Deserialize)]
struct LanguageForm {
    lang: String,
}

async fn set_language(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Form(form): Form<LanguageForm>,
) -> Result<Response, super::UiError> {
    let lang = Lang::parse(&form.lang)
        .ok_or_else(|| AppError::invalid("lang", "expected en or fr"))
        .ui(visitor.lang)?;
    if let Some(session) = &visitor.session {
        state
            .store
            .set_language(session.user.id, Some(lang.code()))
            .await
            .ui(visitor.lang)?;
    }
    // Back to the page the form was on (same origin only).
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_owned()))
        })
        .unwrap_or_else(|| "/".to_owned());
    let mut response = Redirect::to(&safe_next(Some(&back))).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LANG_COOKIE,
            lang.code(),
            Some(365 * 24 * 3600),
            false,
            state.config.is_https(),
        ),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/experiments/3")), "/experiments/3");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
