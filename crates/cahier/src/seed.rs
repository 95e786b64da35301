//! Generates a realistic data set for benchmarks: teams with one researcher each, and
//! experiments with Markdown bodies of a chosen size (paragraphs, a table, a task list).

use anyhow::Context;
use cahier_core::{EntityKind, EntityPatch};
use cahier_store::Store;
use cahier_store::accounts::NewUser;

/// The vocabulary of generated bodies (`cahier bench` searches some of these words).
pub(crate) const WORDS: &[&str] = &[
    "échantillon",
    "sol",
    "prélèvement",
    "mesure",
    "protocole",
    "température",
    "pH",
    "azote",
    "carbone",
    "parcelle",
    "forêt",
    "rivière",
    "sédiment",
    "culture",
    "souche",
    "séquençage",
    "amorce",
    "centrifugation",
    "incubation",
    "dilution",
    "spectre",
    "absorbance",
    "calibration",
    "témoin",
    "réplicat",
    "analyse",
    "résultat",
    "biomasse",
    "humidité",
    "station",
    "transect",
    "quadrat",
    "capteur",
    "lyophilisation",
    "extraction",
    "filtration",
];

/// A Markdown body of about `bytes` bytes: a heading, a table, a task list and prose.
pub(crate) fn body(seed: usize, bytes: usize) -> String {
    let mut text = format!("# Experiment {seed}\n\n| sample | pH | T (°C) |\n|---|---|---|\n");
    for row in 0..5 {
        text.push_str(&format!(
            "| S{} | {}.{} | {} |\n",
            row + 1,
            5 + (seed + row) % 4,
            (seed * 7 + row) % 10,
            10 + (seed + row) % 20
        ));
    }
    text.push_str("\n- [x] calibrate the probe\n- [ ] repeat the measure\n\n");
    let mut i = seed;
    while text.len() < bytes {
        for _ in 0..12 {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(WORDS[(i >> 33) % WORDS.len()]);
            text.push(' ');
        }
        text.push_str(".\n\n");
    }
    text
}

/// Seeds `experiments` experiments spread over `teams` teams. Returns a one-line report.
pub async fn seed(
    store: &Store,
    experiments: usize,
    teams: usize,
    body_bytes: usize,
) -> anyhow::Result<String> {
    let teams = teams.max(1);
    let started = std::time::Instant::now();
    let mut subjects = Vec::new();
    for t in 0..teams {
        let name = format!("Bench team {}", t + 1);
        let team_id = match store.team_by_name(&name).await {
            Ok(team) => team.id,
            Err(_) => store.create_team(&name).await.context("creating a team")?,
        };
        let email = format!("bench{}@example.org", t + 1);
        let user_id = match store.user_by_email(&email).await {
            Ok(user) => user.id,
            Err(_) => store
                .create_user(NewUser {
                    email: email.clone(),
                    firstname: "Bench".into(),
                    lastname: format!("User {}", t + 1),
                    password: Some("bench-password".into()),
                    is_sysadmin: false,
                })
                .await
                .context("creating a user")?,
        };
        store
            .add_member(team_id, user_id, true)
            .await
            .context("adding a member")?;
        subjects.push((team_id, store.subject(user_id).await?));
    }
    // Two workers: document creation is CPU-bound and SQLite serialises the writes.
    let per_worker = experiments.div_ceil(2);
    let mut handles = Vec::new();
    for worker in 0..2 {
        let store = store.clone();
        let subjects = subjects.clone();
        let start = worker * per_worker;
        let end = ((worker + 1) * per_worker).min(experiments);
        handles.push(tokio::spawn(async move {
            for n in start..end {
                let (team_id, subject) = &subjects[n % subjects.len()];
                // Two typed fields, for `field:` searches: a temperature spread over 0–39.9 °C
                // and one of 50 sites.
                let metadata = cahier_core::fields::Metadata::parse(&format!(
                    r#"{{"extra_fields": {{"Temperature": {{"type": "number", "value": "{}", "unit": "°C", "units": ["°C"]}},
                        "Site": {{"type": "text", "value": "site {}"}}}}}}"#,
                    ((n * 7919) % 400) as f64 / 10.0,
                    n % 50
                ))
                .map_err(|e| cahier_store::StoreError::Conflict(e.to_string()))?;
                let patch = EntityPatch {
                    title: Some(format!("Soil campaign {n}: {}", WORDS[n % WORDS.len()])),
                    body: Some(body(n, body_bytes)),
                    tags: Some(vec![WORDS[n % 7].to_owned(), format!("batch-{}", n % 50)]),
                    ops: vec![cahier_core::document::EntityOp::SetMetadata {
                        metadata,
                        require: false,
                    }],
                    ..Default::default()
                };
                let new = cahier_store::NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: *team_id,
                    canread: None,
                    canwrite: None,
                    patch,
                    template: None,
                };
                store.create_entity(subject, new).await?;
            }
            Ok::<_, cahier_store::StoreError>(())
        }));
    }
    for handle in handles {
        handle.await.context("seeding worker")??;
    }
    Ok(format!(
        "seeded {experiments} experiments in {teams} teams in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}
