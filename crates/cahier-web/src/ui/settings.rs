//! The user's settings: language, password, default access for new entries, API keys.

use super::{PageCtx, UiError, UiResultExt, render, when};
use crate::AppState;
use crate::auth::SignedIn;
use crate::error::AppError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cahier_core::BaseLevel;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page))
        .route("/settings/language", post(set_language))
        .route("/settings/time-zone", post(set_time_zone))
        .route("/settings/password", post(change_password))
        .route("/settings/defaults", post(set_defaults))
        .route("/settings/apikeys", post(create_key))
        .route("/settings/apikeys/{id}/delete", post(delete_key))
        .route("/settings/devices/{id}/revoke", post(revoke_device))
}

struct KeyView {
    id: i64,
    name: String,
    team: String,
    can_write: bool,
    created: String,
    last_used: String,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    p: PageCtx,
    lang_pref: String,
    zone_pref: String,
    instance_zone: String,
    zone_names: Vec<String>,
    read_levels: Vec<Choice>,
    write_levels: Vec<Choice>,
    keys: Vec<KeyView>,
    teams: Vec<(i64, String)>,
    new_key: Option<String>,
    error: Option<String>,
    devices: Vec<DeviceView>,
}

struct DeviceView {
    id: i64,
    name: String,
    created: String,
    last_seen: String,
    revoked: bool,
}

#[derive(Debug, Default, Deserialize)]
struct SettingsQuery {
    msg: Option<String>,
}

async fn render_settings(
    state: &AppState,
    session: &SignedIn,
    new_key: Option<String>,
    error: Option<String>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let teams: Vec<(i64, String)> = state
        .store
        .teams_of(session.user.id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let keys = state
        .store
        .api_keys(session.user.id)
        .await
        .ui(lang)?
        .into_iter()
        .map(|k| KeyView {
            team: teams
                .iter()
                .find(|(id, _)| *id == k.team_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            id: k.id,
            name: k.name,
            can_write: k.can_write,
            created: when(k.created_at),
            last_used: k
                .last_used_at
                .map(when)
                .unwrap_or_else(|| lang.t("settings.apikey_never").to_owned()),
        })
        .collect();
    let levels = |selected: i64| {
        BaseLevel::ALL
            .iter()
            .rev()
            .map(|l| Choice {
                value: l.code().to_string(),
                label: lang
                    .t(match l {
                        BaseLevel::OwnerOnly => "access.base_10",
                        BaseLevel::OwnerAndAdmins => "access.base_20",
                        BaseLevel::Team => "access.base_30",
                        BaseLevel::Organization => "access.base_40",
                        BaseLevel::Public => "access.base_50",
                    })
                    .to_owned(),
                selected: l.code() == selected,
            })
            .collect()
    };
    let p = PageCtx::signed_in(state, session, lang.t("settings.title").to_owned())
        .await
        .ui(lang)?
        .with_notice(notice);
    let devices = state
        .store
        .devices(Some(session.user.id))
        .await
        .ui(lang)?
        .into_iter()
        .map(|d| DeviceView {
            id: d.id,
            name: d.name,
            created: when(d.created_at),
            last_seen: d
                .last_seen
                .map(when)
                .unwrap_or_else(|| lang.t("settings.apikey_never").to_owned()),
            revoked: d.revoked_at.is_some(),
        })
        .collect();
    let instance_zone = state.store.instance_zone().await.ui(lang)?;
    Ok(render(&SettingsPage {
        p,
        devices,
        lang_pref: session.user.lang.clone().unwrap_or_default(),
        zone_pref: session.user.time_zone.clone().unwrap_or_default(),
        instance_zone: instance_zone.name().to_owned(),
        zone_names: cahier_core::zone::Zone::all_names(),
        read_levels: levels(session.user.default_read_base),
        write_levels: levels(session.user.default_write_base),
        keys,
        teams,
        new_key,
        error,
    }))
}

async fn settings_page(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, UiError> {
    let notice = match query.msg.as_deref() {
        Some("saved") => Some("settings.saved"),
        Some("password") => Some("settings.password_changed"),
        _ => None,
    };
    render_settings(&state, &session, None, None, notice).await
}

#[derive(Debug, Deserialize)]
struct LanguageForm {
    lang: String,
}

async fn set_language(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<LanguageForm>,
) -> Result<Response, UiError> {
    let lang = if form.lang.is_empty() {
        None
    } else {
        Some(form.lang.as_str())
    };
    state
        .store
        .set_language(session.user.id, lang)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/settings?msg=saved").into_response())
}

#[derive(Debug, Deserialize)]
struct ZoneForm {
    #[serde(default)]
    time_zone: String,
}

async fn set_time_zone(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<ZoneForm>,
) -> Result<Response, UiError> {
    let name = Some(form.time_zone.trim()).filter(|n| !n.is_empty());
    match state.store.set_user_zone(session.user.id, name).await {
        Ok(()) => Ok(Redirect::to("/settings?msg=saved").into_response()),
        Err(error) => {
            let message = AppError::from(error).public_message();
            render_settings(&state, &session, None, Some(message), None).await
        }
    }
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    match state
        .store
        .change_password(session.user.id, &form.current_password, &form.new_password)
        .await
    {
        Ok(()) => {
            // Changing the password signed out every session, this one too: open a fresh one.
            let token = state
                .store
                .create_session(session.user.id)
                .await
                .ui(session.lang)?;
            let mut response = Redirect::to("/settings?msg=password").into_response();
            response.headers_mut().append(
                axum::http::header::SET_COOKIE,
                crate::auth::set_cookie(
                    crate::auth::SESSION_COOKIE,
                    &token,
                    None,
                    true,
                    state.config.is_https(),
                ),
            );
            Ok(response)
        }
        Err(cahier_store::StoreError::Invalid { field, message }) => {
            let mut response = render_settings(
                &state,
                &session,
                None,
                Some(format!("{field}: {message}")),
                None,
            )
            .await?;
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(error) => Err(UiError(error.into(), session.lang)),
    }
}

#[derive(Debug, Deserialize)]
struct DefaultsForm {
    read_base: i64,
    write_base: i64,
}

async fn set_defaults(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<DefaultsForm>,
) -> Result<Response, UiError> {
    let lang = session.lang;
    let read = BaseLevel::from_code(form.read_base)
        .ok_or_else(|| AppError::invalid("read_base", "choose a level"))
        .ui(lang)?;
    let write = BaseLevel::from_code(form.write_base)
        .ok_or_else(|| AppError::invalid("write_base", "choose a level"))
        .ui(lang)?;
    state
        .store
        .set_default_access(session.user.id, read, write)
        .await
        .ui(lang)?;
    Ok(Redirect::to("/settings?msg=saved").into_response())
}

#[derive(Debug, Deserialize)]
struct KeyForm {
    name: String,
    team: i64,
    can_write: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    session: SignedIn,
    Form(form): Form<KeyForm>,
) -> Result<Response, UiError> {
    let (_, key) = state
        .store
        .create_api_key(
            session.user.id,
            form.team,
            &form.name,
            form.can_write.is_some(),
        )
        .await
        .ui(session.lang)?;
    render_settings(&state, &session, Some(key), None, None).await
}

async fn delete_key(
    State(state): State<AppState>,
    session: SignedIn,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response, UiError> {
    state
        .store
        .delete_api_key(session.user.id, id)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/settings?msg=saved").into_response())
}

async fn revoke_device(
    State(state): State<AppState>,
    session: SignedIn,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response, UiError> {
    state
        .store
        .revoke_device(&session.subject, id)
        .await
        .ui(session.lang)?;
    Ok(Redirect::to("/settings?msg=saved").into_response())
}
