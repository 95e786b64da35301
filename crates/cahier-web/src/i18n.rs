//! The interface in French and English. Every string a page shows comes from [`STRINGS`]; a
//! test checks that every key used in a template exists here in both languages.
//!
//! Language choice: the user's saved preference, else the `cahier_lang` cookie (visitors), else
//! the browser's `Accept-Language`, else French (most of our users are French speakers).

use axum::http::{HeaderMap, header};
use std::collections::HashMap;
use std::sync::OnceLock;

/// An interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English.
    En,
    /// French.
    #[default]
    Fr,
}

impl Lang {
    /// The BCP 47 code used in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Fr => "fr",
        }
    }

    /// Parses `en` or `fr`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Self::En),
            "fr" => Some(Self::Fr),
            _ => None,
        }
    }

    /// Chooses the language: explicit preference first, then `Accept-Language`.
    pub fn from_headers(headers: &HeaderMap, preference: Option<&str>) -> Self {
        if let Some(lang) = preference.and_then(Self::parse) {
            return lang;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Self::from_accept_language(accept)
    }

    /// Picks the best of our languages from an `Accept-Language` value.
    pub fn from_accept_language(accept: &str) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for part in accept.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(lang) = Self::parse(primary)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, lang)| lang).unwrap_or_default()
    }

    /// The translation of `key`; the key itself if missing (a test keeps that from happening).
    pub fn t(self, key: &str) -> &'static str {
        static TABLE: OnceLock<HashMap<&'static str, (&'static str, &'static str)>> =
            OnceLock::new();
        let table =
            TABLE.get_or_init(|| STRINGS.iter().map(|&(k, en, fr)| (k, (en, fr))).collect());
        match table.get(key) {
            Some((en, fr)) => match self {
                Self::En => en,
                Self::Fr => fr,
            },
            None => {
                tracing::warn!(key, "missing translation");
                "?"
            }
        }
    }
}

/// Every interface string: (key, English, French).
pub const STRINGS: &[(&str, &str, &str)] = &[
    // Trusted timestamps
    ("timestamp.title", "Trusted timestamps", "Horodatages"),
    (
        "timestamp.none",
        "This entry has no trusted timestamp yet.",
        "Cette entrée n'a pas encore été horodatée.",
    ),
    ("timestamp.on", "Timestamped on", "Horodaté le"),
    ("timestamp.by", "by", "par"),
    (
        "timestamp.download",
        "download the proof",
        "télécharger la preuve",
    ),
    ("timestamp.button", "Timestamp", "Horodater"),
    (
        "timestamp.hint",
        "Ask the timestamping authority to certify the current version (RFC 3161)",
        "Demander à l'autorité d'horodatage de certifier la version actuelle (RFC 3161)",
    ),
    // Signatures (ui/signatures.rs)
    ("signature.title", "Signatures", "Signatures"),
    (
        "signature.explain",
        "A signature proves that the holder of a key stated its meaning about this exact version; anyone can check it with minisign.",
        "Une signature prouve que le détenteur d'une clé a déclaré sa portée sur cette version précise ; chacun peut la vérifier avec minisign.",
    ),
    (
        "signature.list",
        "Signatures of this entry",
        "Signatures de cette entrée",
    ),
    (
        "signature.none",
        "This entry has not been signed yet.",
        "Cette entrée n'a pas encore été signée.",
    ),
    ("signature.valid", "verified", "vérifiée"),
    ("signature.invalid", "does not verify", "ne se vérifie pas"),
    ("signature.version", "Signed version:", "Version signée :"),
    (
        "signature.check_hint",
        "To check without Cahier, download the three files and run:",
        "Pour vérifier sans Cahier, téléchargez les trois fichiers et lancez :",
    ),
    (
        "signature.sign",
        "Sign the current version",
        "Signer la version actuelle",
    ),
    ("signature.meaning", "Meaning", "Portée"),
    ("signature.sign_button", "Sign", "Signer"),
    (
        "signature.choose_meaning",
        "Choose what your signature means.",
        "Choisissez la portée de votre signature.",
    ),
    (
        "signature.wrong_passphrase",
        "Wrong passphrase for your signing key. Nothing was signed; try again.",
        "Phrase secrète incorrecte pour votre clé de signature. Rien n'a été signé ; réessayez.",
    ),
    (
        "signature.no_key",
        "You need a signing key first:",
        "Il vous faut d'abord une clé de signature :",
    ),
    ("signature.link", "Signatures", "Signatures"),
    ("meaning.approval", "Approval", "Approbation"),
    ("meaning.disapproval", "Disapproval", "Désapprobation"),
    ("meaning.authorship", "Authorship", "Auteur"),
    ("meaning.responsibility", "Responsibility", "Responsabilité"),
    ("meaning.review", "Review", "Relecture"),
    ("meaning.safety", "Safety", "Sécurité"),
    ("meaning.witness", "Witness", "Témoin"),
    ("meaning.unknown", "Unknown meaning", "Portée inconnue"),
    ("signkey.title", "Signing key", "Clé de signature"),
    (
        "signkey.explain",
        "Your key pair signs entries (Ed25519, minisign format). The secret key is stored encrypted with your passphrase, which Cahier never keeps: without it nobody, not even an administrator, can sign in your name.",
        "Votre paire de clés signe les entrées (Ed25519, format minisign). La clé secrète est conservée chiffrée par votre phrase secrète, que Cahier ne garde jamais : sans elle personne, pas même un administrateur, ne peut signer en votre nom.",
    ),
    ("signkey.public", "Your public key", "Votre clé publique"),
    ("signkey.id", "Key", "Clé"),
    ("signkey.created_on", "made on", "créée le"),
    (
        "signkey.none",
        "You have no signing key yet.",
        "Vous n'avez pas encore de clé de signature.",
    ),
    (
        "signkey.create",
        "Make a signing key",
        "Créer une clé de signature",
    ),
    (
        "signkey.replace",
        "Replace your signing key",
        "Remplacer votre clé de signature",
    ),
    ("signkey.passphrase", "Passphrase", "Phrase secrète"),
    (
        "signkey.passphrase_hint",
        "At least 8 characters. It cannot be recovered: a forgotten passphrase means making a new key.",
        "Au moins 8 caractères. Elle ne peut pas être retrouvée : une phrase oubliée oblige à créer une nouvelle clé.",
    ),
    (
        "signkey.passphrase_again",
        "Passphrase again",
        "Phrase secrète (encore)",
    ),
    ("signkey.create_button", "Make the key", "Créer la clé"),
    (
        "signkey.mismatch",
        "The two passphrases differ; type them again.",
        "Les deux phrases secrètes diffèrent ; saisissez-les à nouveau.",
    ),
    (
        "signkey.too_short",
        "Use a passphrase of at least 8 characters.",
        "Choisissez une phrase secrète d'au moins 8 caractères.",
    ),
    (
        "signkey.created",
        "Your signing key is ready.",
        "Votre clé de signature est prête.",
    ),
    ("signkey.back", "Back to settings", "Retour aux paramètres"),
    // Audit log (ui/audit_log.rs)
    (
        "locking.title",
        "Locking on proofs",
        "Verrouillage sur preuve",
    ),
    (
        "locking.on_timestamp",
        "Lock an entry when it is timestamped",
        "Verrouiller une entrée quand elle est horodatée",
    ),
    (
        "locking.on_signature",
        "Lock an entry when it is signed",
        "Verrouiller une entrée quand elle est signée",
    ),
    ("audit.title", "Audit log", "Journal d'audit"),
    (
        "tsa.title",
        "Timestamping authority",
        "Autorité d'horodatage",
    ),
    ("tsa.url", "Address", "Adresse"),
    ("tsa.hash", "Hash", "Empreinte"),
    ("tsa.roots", "Trusted roots", "Racines de confiance"),
    (
        "tsa.none",
        "No authority is configured: trusted timestamps are unavailable.",
        "Aucune autorité n'est configurée : l'horodatage qualifié est indisponible.",
    ),
    (
        "tsa.how",
        "Choose a common authority or give its address, and paste its root certificates (PEM). Changes apply at once. The environment (CAHIER_TSA_URL, CAHIER_TSA_CA_FILE) and tsa_url in cahier.toml take precedence over this form.",
        "Choisissez une autorité courante ou donnez son adresse, et collez ses certificats racines (PEM). Les changements s'appliquent aussitôt. L'environnement (CAHIER_TSA_URL, CAHIER_TSA_CA_FILE) et tsa_url dans cahier.toml priment sur ce formulaire.",
    ),
    (
        "tsa.fixed",
        "The authority is set by the environment (CAHIER_TSA_URL, CAHIER_TSA_CA_FILE) or cahier.toml, which take precedence: change it there and restart.",
        "L'autorité est fixée par l'environnement (CAHIER_TSA_URL, CAHIER_TSA_CA_FILE) ou cahier.toml, qui priment : modifiez-la là et redémarrez.",
    ),
    ("tsa.preset", "Authority", "Autorité"),
    (
        "tsa.custom",
        "Other (address below)",
        "Autre (adresse ci-dessous)",
    ),
    (
        "tsa.custom_url",
        "Address of another authority",
        "Adresse d'une autre autorité",
    ),
    ("tsa.user", "User (optional)", "Utilisateur (facultatif)"),
    (
        "tsa.password",
        "Password (optional)",
        "Mot de passe (facultatif)",
    ),
    (
        "tsa.password_kept",
        "A password is stored; leave blank to keep it.",
        "Un mot de passe est enregistré ; laissez vide pour le garder.",
    ),
    (
        "tsa.clear_password",
        "Remove the password",
        "Supprimer le mot de passe",
    ),
    (
        "tsa.roots_pem",
        "Root certificates of the authority (PEM)",
        "Certificats racines de l'autorité (PEM)",
    ),
    (
        "tsa.roots_kept",
        "Certificates are stored; leave blank to keep them.",
        "Des certificats sont enregistrés ; laissez vide pour les garder.",
    ),
    (
        "tsa.roots_stored",
        "stored on the admin page",
        "enregistrées sur la page d'administration",
    ),
    ("tsa.test", "Test", "Tester"),
    ("tsa.remove", "Remove", "Supprimer"),
    (
        "tsa.test_ok",
        "The authority answered: its token over a test value was checked against the roots.",
        "L'autorité a répondu : son jeton sur une valeur de test a été vérifié avec les racines.",
    ),
    (
        "tsa.test_failed",
        "The test failed, nothing was saved:",
        "Le test a échoué, rien n'a été enregistré :",
    ),
    (
        "tsa.bad_preset",
        "unknown authority: choose one of the list",
        "autorité inconnue : choisissez-en une dans la liste",
    ),
    (
        "tsa.bad_url",
        "give the authority's address, starting with http:// or https://",
        "donnez l'adresse de l'autorité, commençant par http:// ou https://",
    ),
    (
        "tsa.bad_hash",
        "choose SHA-256 or SHA-512",
        "choisissez SHA-256 ou SHA-512",
    ),
    (
        "tsa.bad_roots",
        "the root certificates must be PEM X.509 certificates; nothing was saved",
        "les certificats racines doivent être des certificats X.509 en PEM ; rien n'a été enregistré",
    ),
    (
        "tsa.roots_required",
        "required: paste the authority's root certificates (PEM)",
        "obligatoire : collez les certificats racines de l'autorité (PEM)",
    ),
    ("tsa.authority", "Authority", "Autorité"),
    ("tsa.note", "Notes", "Remarques"),
    (
        "audit.explain",
        "Every action on the server, in order. Each entry's hash covers the previous one, so any later change to the log shows.",
        "Toutes les actions sur le serveur, dans l'ordre. L'empreinte de chaque entrée couvre la précédente : toute modification ultérieure du journal se voit.",
    ),
    (
        "audit.chain_ok",
        "The chain is intact",
        "La chaîne est intacte",
    ),
    (
        "audit.chain_broken",
        "The chain is broken: these entries were changed or removed after they were written.",
        "La chaîne est rompue : ces entrées ont été modifiées ou supprimées après leur écriture.",
    ),
    ("audit.entries", "entries", "entrées"),
    (
        "audit.checkpoint",
        "Checked here: the entries written since the last verified entry,",
        "Vérifiées ici : les entrées écrites depuis la dernière entrée vérifiée,",
    ),
    (
        "audit.checkpoint_full",
        "`cahier verify` re-checks the whole chain from the first entry.",
        "`cahier verify` revérifie toute la chaîne depuis la première entrée.",
    ),
    ("audit.head", "last entry", "dernière entrée"),
    ("audit.action", "Action", "Action"),
    ("audit.any", "any", "toutes"),
    ("audit.user", "User", "Utilisateur"),
    ("audit.target_type", "Target type", "Type de cible"),
    ("audit.target_id", "Target id", "Identifiant de cible"),
    ("audit.target", "Target", "Cible"),
    ("audit.from", "From", "Du"),
    ("audit.to", "To", "Au"),
    ("audit.filter", "Filter", "Filtrer"),
    ("audit.when", "When", "Quand"),
    ("audit.details", "Details", "Détails"),
    ("audit.hash", "Hash", "Empreinte"),
    (
        "audit.none",
        "No entry matches these filters.",
        "Aucune entrée ne correspond à ces filtres.",
    ),
    ("audit.older", "Older entries", "Entrées plus anciennes"),
    (
        "audit.unknown_user",
        "No user has this e-mail address.",
        "Aucun utilisateur n'a cette adresse e-mail.",
    ),
    (
        "audit.bad_date",
        "Write dates as YYYY-MM-DD.",
        "Écrivez les dates sous la forme AAAA-MM-JJ.",
    ),
    // Layout and navigation
    ("app.name", "Cahier", "Cahier"),
    (
        "app.tagline",
        "Electronic lab notebook",
        "Cahier de laboratoire électronique",
    ),
    ("nav.skip", "Skip to content", "Aller au contenu"),
    ("nav.templates", "Templates", "Modèles"),
    (
        "templates.title",
        "Experiment templates",
        "Modèles d'expérience",
    ),
    ("templates.new", "New template", "Nouveau modèle"),
    (
        "team.templates_link",
        "The team's experiment templates and its default template",
        "Les modèles d'expérience de l'équipe et son modèle par défaut",
    ),
    (
        "templates.use",
        "New experiment from this template",
        "Nouvelle expérience à partir de ce modèle",
    ),
    ("templates.start_from", "Start from", "Partir de"),
    ("templates.blank", "Blank experiment", "Expérience vierge"),
    (
        "templates.blank_resource",
        "Blank resource",
        "Ressource vierge",
    ),
    (
        "templates.from_category",
        "The category's template",
        "Le modèle de la catégorie",
    ),
    (
        "templates.default",
        "team default",
        "modèle par défaut de l'équipe",
    ),
    (
        "templates.made_from",
        "Made from the template",
        "Créée à partir du modèle",
    ),
    (
        "templates.is_default",
        "This is the team's default template.",
        "C'est le modèle par défaut de l'équipe.",
    ),
    (
        "templates.not_default",
        "Not the team's default template.",
        "Ce n'est pas le modèle par défaut de l'équipe.",
    ),
    (
        "templates.make_default",
        "Make it the team default",
        "En faire le modèle par défaut",
    ),
    (
        "templates.clear_default",
        "Stop using it as default",
        "Ne plus l'utiliser par défaut",
    ),
    (
        "list.search_fields_hint",
        "Search fields too: field:Temperature>20, field:\"Sample type\"=soil; combine with AND, OR, NOT and parentheses: title:soil OR tag:water, date:>2024-01-01, author:Curie, status:Running",
        "Cherchez aussi dans les champs : field:Température>20, field:\"Type d'échantillon\"=sol ; combinez avec AND, OR, NOT et des parenthèses : title:sol OR tag:eau, date:>2024-01-01, author:Curie, status:\"En cours\"",
    ),
    ("fields.title", "Fields", "Champs"),
    (
        "fields.none",
        "No fields yet.",
        "Aucun champ pour l'instant.",
    ),
    (
        "fields.template_hint",
        "Values given here are the defaults of experiments made from this template.",
        "Les valeurs saisies ici sont les valeurs par défaut des expériences créées à partir de ce modèle.",
    ),
    ("fields.other", "Other fields", "Autres champs"),
    ("fields.required", "required", "obligatoire"),
    (
        "fields.required_error",
        "This field is required: fill it in.",
        "Ce champ est obligatoire : remplissez-le.",
    ),
    (
        "fields.refused",
        "Some fields were not saved: see the messages next to them.",
        "Certains champs n'ont pas été enregistrés : voyez les messages à côté.",
    ),
    ("fields.saved", "Fields saved.", "Champs enregistrés."),
    ("fields.save", "Save fields", "Enregistrer les champs"),
    ("fields.unit", "Unit", "Unité"),
    ("fields.open_link", "Open", "Ouvrir"),
    ("fields.remove", "Remove field", "Retirer le champ"),
    (
        "fields.remove_confirm",
        "Remove this field and its value?",
        "Retirer ce champ et sa valeur ?",
    ),
    ("fields.add", "Add a field", "Ajouter un champ"),
    ("fields.add_button", "Add the field", "Ajouter le champ"),
    ("fields.name", "Name", "Nom"),
    (
        "fields.name_taken",
        "a field with this name exists already; choose another name",
        "un champ porte déjà ce nom ; choisissez-en un autre",
    ),
    ("fields.type", "Type", "Type"),
    (
        "fields.options",
        "Choices (for a list)",
        "Choix (pour une liste)",
    ),
    (
        "fields.options_hint",
        "Separated by commas.",
        "Séparés par des virgules.",
    ),
    (
        "fields.multiple",
        "Several choices allowed",
        "Plusieurs choix possibles",
    ),
    (
        "fields.units",
        "Units (for a number)",
        "Unités (pour un nombre)",
    ),
    (
        "fields.units_hint",
        "Separated by commas; the first is chosen by default.",
        "Séparées par des virgules ; la première est choisie par défaut.",
    ),
    ("fields.default_value", "Default value", "Valeur par défaut"),
    ("fields.group", "Group", "Groupe"),
    ("fields.description", "Description", "Description"),
    ("fields.required_label", "Required", "Obligatoire"),
    (
        "fields.definitions",
        "Edit or remove fields",
        "Modifier ou retirer des champs",
    ),
    (
        "fields.update_definition",
        "Update the field",
        "Mettre à jour le champ",
    ),
    (
        "fields.err_number",
        "Write a number, like 12 or 4.5.",
        "Écrivez un nombre, comme 12 ou 4.5.",
    ),
    (
        "fields.err_date",
        "Write a date as YYYY-MM-DD.",
        "Écrivez une date au format AAAA-MM-JJ.",
    ),
    (
        "fields.err_datetime",
        "Write a date and time as YYYY-MM-DDTHH:MM.",
        "Écrivez une date et une heure au format AAAA-MM-JJTHH:MM.",
    ),
    (
        "fields.err_time",
        "Write a time as HH:MM.",
        "Écrivez une heure au format HH:MM.",
    ),
    (
        "fields.err_email",
        "Write an e-mail address, like name@example.org.",
        "Écrivez une adresse électronique, comme nom@exemple.fr.",
    ),
    (
        "fields.err_url",
        "Write a web address starting with https://.",
        "Écrivez une adresse web commençant par https://.",
    ),
    (
        "fields.err_option",
        "Pick one of the proposed choices.",
        "Choisissez parmi les choix proposés.",
    ),
    (
        "fields.err_checkbox",
        "Tick the box or leave it empty.",
        "Cochez la case ou laissez-la vide.",
    ),
    (
        "fields.err_link",
        "Give the number of an entry you can open.",
        "Indiquez le numéro d'une entrée que vous pouvez ouvrir.",
    ),
    (
        "fields.err_unit",
        "Pick one of the proposed units.",
        "Choisissez parmi les unités proposées.",
    ),
    (
        "fields.err_too_long",
        "This value is too long.",
        "Cette valeur est trop longue.",
    ),
    ("nav.main", "Main menu", "Menu principal"),
    ("nav.dashboard", "Dashboard", "Tableau de bord"),
    ("nav.experiments", "Experiments", "Expériences"),
    ("nav.team", "Team admin", "Administration de l'équipe"),
    ("nav.sysadmin", "Instance admin", "Administration système"),
    ("nav.settings", "Settings", "Paramètres"),
    ("nav.logout", "Sign out", "Se déconnecter"),
    ("nav.current_team", "Current team", "Équipe courante"),
    ("nav.switch", "Switch", "Changer"),
    ("nav.language", "Language", "Langue"),
    ("nav.shortcuts", "Keyboard shortcuts", "Raccourcis clavier"),
    ("lang.en", "English", "English"),
    ("lang.fr", "Français", "Français"),
    ("lang.browser", "Follow my browser", "Suivre mon navigateur"),
    (
        "shortcuts.new",
        "n — new experiment",
        "n — nouvelle expérience",
    ),
    ("shortcuts.search", "/ — search", "/ — rechercher"),
    (
        "shortcuts.save",
        "Ctrl+S — save now",
        "Ctrl+S — enregistrer maintenant",
    ),
    ("shortcuts.help", "? — this help", "? — cette aide"),
    ("common.save", "Save", "Enregistrer"),
    ("common.cancel", "Cancel", "Annuler"),
    ("common.close", "Close", "Fermer"),
    ("common.add", "Add", "Ajouter"),
    ("common.remove", "Remove", "Retirer"),
    ("common.delete", "Delete", "Supprimer"),
    ("common.create", "Create", "Créer"),
    ("common.rename", "Rename", "Renommer"),
    ("common.none", "None", "Aucun"),
    ("common.yes", "Yes", "Oui"),
    ("common.no", "No", "Non"),
    ("common.by", "by", "par"),
    ("common.on", "on", "le"),
    ("common.name", "Name", "Nom"),
    ("common.email", "E-mail", "Adresse électronique"),
    ("common.colour", "Colour", "Couleur"),
    ("common.default", "Default", "Par défaut"),
    ("common.actions", "Actions", "Actions"),
    ("common.next_page", "Next page", "Page suivante"),
    ("common.first_page", "First page", "Première page"),
    ("common.back", "Back", "Retour"),
    ("common.error", "Error", "Erreur"),
    ("common.unknown_user", "unknown user", "utilisateur inconnu"),
    // Errors
    (
        "error.title",
        "Something went wrong",
        "Un problème est survenu",
    ),
    (
        "error.not_found",
        "This page does not exist, or you do not have access to it.",
        "Cette page n'existe pas, ou vous n'y avez pas accès.",
    ),
    (
        "error.go_home",
        "Back to the dashboard",
        "Retour au tableau de bord",
    ),
    // Sign in and setup
    ("login.title", "Sign in", "Connexion"),
    ("login.email", "E-mail", "Adresse électronique"),
    ("login.password", "Password", "Mot de passe"),
    ("login.submit", "Sign in", "Se connecter"),
    (
        "login.failed",
        "Wrong e-mail or password.",
        "Adresse ou mot de passe incorrect.",
    ),
    (
        "login.throttled",
        "Too many failed attempts. Wait a few minutes, then try again.",
        "Trop d'essais infructueux. Attendez quelques minutes puis réessayez.",
    ),
    (
        "login.signed_out",
        "You are signed out.",
        "Vous êtes déconnecté.",
    ),
    ("setup.title", "Set up Cahier", "Installer Cahier"),
    (
        "setup.intro",
        "Create the first administrator account and the first team. You can add people and teams afterwards.",
        "Créez le premier compte administrateur et la première équipe. Vous ajouterez les personnes et les équipes ensuite.",
    ),
    ("setup.firstname", "First name", "Prénom"),
    ("setup.lastname", "Last name", "Nom"),
    ("setup.team", "First team", "Première équipe"),
    (
        "setup.password_hint",
        "At least 8 characters.",
        "Au moins 8 caractères.",
    ),
    ("setup.submit", "Create my account", "Créer mon compte"),
    (
        "setup.invalid",
        "This setup link has been used or replaced. Restart the server to get a new one, or sign in.",
        "Ce lien d'installation a déjà servi ou a été remplacé. Redémarrez le serveur pour en obtenir un nouveau, ou connectez-vous.",
    ),
    // Dashboard
    ("dashboard.title", "Dashboard", "Tableau de bord"),
    ("dashboard.welcome", "Hello", "Bonjour"),
    (
        "dashboard.recent",
        "My recent experiments",
        "Mes expériences récentes",
    ),
    ("dashboard.steps", "Unfinished steps", "Étapes à terminer"),
    (
        "dashboard.no_steps",
        "No unfinished steps.",
        "Aucune étape en attente.",
    ),
    (
        "dashboard.no_team",
        "You belong to no team yet. Ask a team admin to add you.",
        "Vous n'appartenez encore à aucune équipe. Demandez à un administrateur d'équipe de vous ajouter.",
    ),
    // Entity list
    ("list.title", "Experiments", "Expériences"),
    ("list.new", "New experiment", "Nouvelle expérience"),
    ("list.search", "Search", "Rechercher"),
    (
        "list.search_placeholder",
        "Whole words in title, body, tags or comments; sédim* for words starting with sédim",
        "Mots entiers du titre, du texte, des mots-clés ou des commentaires ; sédim* pour les mots commençant par sédim",
    ),
    ("list.filters", "Filters", "Filtres"),
    ("list.any", "Any", "Tous"),
    ("list.owner", "Owner", "Propriétaire"),
    ("list.owner_me", "Mine", "Les miennes"),
    ("list.tag", "Tag", "Étiquette"),
    ("list.sort", "Sort by", "Trier par"),
    (
        "list.sort_lastchange",
        "Last change",
        "Dernière modification",
    ),
    ("list.sort_date", "Date", "Date"),
    ("list.sort_title", "Title", "Titre"),
    ("list.sort_id", "Creation", "Création"),
    ("list.desc", "Newest first", "Plus récentes d'abord"),
    ("list.asc", "Oldest first", "Plus anciennes d'abord"),
    ("list.apply", "Apply", "Appliquer"),
    ("list.clear", "Clear filters", "Effacer les filtres"),
    ("list.empty", "Nothing here yet.", "Rien pour l'instant."),
    (
        "list.no_whole_words",
        "No entry contains these whole words.",
        "Aucune entrée ne contient ces mots entiers.",
    ),
    (
        "list.try_prefix",
        "Search words starting with",
        "Chercher les mots commençant par",
    ),
    ("list.show_deleted", "Deleted", "Supprimées"),
    ("list.col_title", "Title", "Titre"),
    ("list.col_date", "Date", "Date"),
    ("list.col_status", "Status", "Statut"),
    ("list.col_category", "Category", "Catégorie"),
    ("list.col_tags", "Tags", "Étiquettes"),
    ("list.col_owner", "Owner", "Propriétaire"),
    ("list.col_changed", "Changed", "Modifiée"),
    ("list.conflict_badge", "conflict", "conflit"),
    ("list.locked_badge", "locked", "verrouillée"),
    // Entity page
    ("entity.title", "Title", "Titre"),
    ("entity.date", "Date", "Date"),
    ("entity.status", "Status", "Statut"),
    ("entity.category", "Category", "Catégorie"),
    ("entity.rating", "Rating", "Note"),
    ("entity.tags", "Tags", "Mots-clés"),
    (
        "entity.tags_hint",
        "Separate tags with commas.",
        "Séparez les mots-clés par des virgules.",
    ),
    ("entity.body", "Notes", "Notes"),
    (
        "entity.body_hint",
        "Markdown: **bold**, # heading, - list, | tables |, - [ ] tasks.",
        "Markdown : **gras**, # titre, - liste, | tableaux |, - [ ] tâches.",
    ),
    ("entity.preview", "Preview", "Aperçu"),
    ("entity.format", "Format", "Format"),
    ("entity.format_md", "Markdown", "Markdown"),
    ("entity.format_html", "HTML", "HTML"),
    ("entity.save", "Save", "Enregistrer"),
    ("entity.saved_at", "Saved at", "Enregistré à"),
    ("entity.saving", "Saving…", "Enregistrement…"),
    (
        "entity.unsaved",
        "Unsaved changes",
        "Modifications non enregistrées",
    ),
    (
        "entity.save_failed",
        "Not saved — check your connection; your text is kept here.",
        "Non enregistré — vérifiez la connexion ; votre texte est conservé ici.",
    ),
    (
        "entity.merged",
        "Someone else edited this entry meanwhile. Both edits are kept; reload to see the merged version.",
        "Quelqu'un d'autre a modifié cette entrée entre-temps. Les deux modifications sont conservées ; rechargez pour voir la version fusionnée.",
    ),
    (
        "entity.leave_warning",
        "You have unsaved changes.",
        "Vous avez des modifications non enregistrées.",
    ),
    (
        "entity.read_only",
        "You can read this entry but not change it.",
        "Vous pouvez lire cette entrée mais pas la modifier.",
    ),
    ("entity.locked", "Locked", "Verrouillée"),
    ("entity.locked_by", "Locked by", "Verrouillée par"),
    (
        "entity.locked_explain",
        "A locked entry accepts no change, from anyone, until the person who locked it, its owner or a team admin unlocks it.",
        "Une entrée verrouillée n'accepte aucune modification, de personne, tant que la personne qui l'a verrouillée, son propriétaire ou un administrateur d'équipe ne l'a pas déverrouillée.",
    ),
    (
        "entity.deleted",
        "This entry is deleted. Restore it to use it again.",
        "Cette entrée est supprimée. Restaurez-la pour la réutiliser.",
    ),
    ("entity.created", "Created", "Créée"),
    ("entity.modified", "Last change", "Dernière modification"),
    ("entity.owner", "Owner", "Propriétaire"),
    ("entity.team", "Team", "Équipe"),
    ("entity.id", "Number", "Numéro"),
    ("entity.details", "Details", "Détails"),
    ("entity.steps", "Steps", "Étapes"),
    ("entity.step_new", "New step", "Nouvelle étape"),
    ("entity.step_done_by", "done by", "faite par"),
    (
        "entity.step_toggle",
        "Mark done or not done",
        "Marquer faite ou à faire",
    ),
    ("entity.no_steps", "No steps yet.", "Pas encore d'étapes."),
    ("entity.comments", "Comments", "Commentaires"),
    ("attachments.title", "Attachments", "Pièces jointes"),
    (
        "attachments.none",
        "No attachments yet.",
        "Pas encore de pièces jointes.",
    ),
    ("attachments.name", "Name", "Nom"),
    ("attachments.size", "Size", "Taille"),
    ("attachments.type", "Type", "Type"),
    ("attachments.uploader", "Added by", "Ajoutée par"),
    ("attachments.time", "Added", "Ajoutée le"),
    ("attachments.hash", "SHA-256", "SHA-256"),
    (
        "attachments.previous",
        "Earlier versions",
        "Versions précédentes",
    ),
    ("attachments.replace", "Replace", "Remplacer"),
    (
        "attachments.history_attach",
        "file attached",
        "fichier joint",
    ),
    (
        "attachments.replace_file",
        "New version of this file",
        "Nouvelle version de ce fichier",
    ),
    (
        "attachments.delete_confirm",
        "Delete this attachment? Earlier versions stay in the history.",
        "Supprimer cette pièce jointe ? Les versions précédentes restent dans l'historique.",
    ),
    (
        "attachments.choose",
        "Files to attach",
        "Fichiers à joindre",
    ),
    (
        "attachments.comment",
        "Comment (optional)",
        "Commentaire (facultatif)",
    ),
    ("attachments.upload", "Upload", "Envoyer"),
    (
        "attachments.hint",
        "You can also drop files on the page, or paste an image into the text.",
        "Vous pouvez aussi déposer des fichiers sur la page, ou coller une image dans le texte.",
    ),
    ("attachments.uploading", "Uploading…", "Envoi…"),
    ("attachments.failed", "Upload failed:", "Échec de l'envoi :"),
    ("attachments.done", "Uploaded.", "Envoyé."),
    (
        "attachments.none_chosen",
        "choose at least one file",
        "choisissez au moins un fichier",
    ),
    (
        "entity.comment_new",
        "Add a comment",
        "Ajouter un commentaire",
    ),
    ("entity.comment_post", "Comment", "Commenter"),
    (
        "entity.no_comments",
        "No comments yet.",
        "Pas encore de commentaires.",
    ),
    ("entity.links", "Links", "Liens"),
    (
        "entity.link_add",
        "Link to number (experiment or resource)",
        "Lier au numéro (expérience ou ressource)",
    ),
    ("entity.linked_from", "Linked from", "Citée par"),
    ("entity.used_in", "Used in", "Utilisée dans"),
    (
        "team.category_read",
        "New resources readable by",
        "Nouvelles ressources lisibles par",
    ),
    (
        "team.category_write",
        "New resources writable by",
        "Nouvelles ressources modifiables par",
    ),
    (
        "team.category_author_default",
        "the author's default",
        "le choix par défaut de l'auteur",
    ),
    (
        "team.category_template",
        "New resources start from",
        "Les nouvelles ressources partent de",
    ),
    ("kind.experiment", "Experiment", "Expérience"),
    ("kind.resource", "Resource", "Ressource"),
    ("kind.experiment_template", "Template", "Modèle"),
    (
        "kind.resource_template",
        "Resource template",
        "Modèle de ressource",
    ),
    ("nav.resources", "Resources", "Ressources"),
    ("resources.title", "Resources", "Ressources"),
    ("resources.new", "New resource", "Nouvelle ressource"),
    (
        "resource_templates.title",
        "Resource templates",
        "Modèles de ressources",
    ),
    (
        "resource_templates.new",
        "New resource template",
        "Nouveau modèle de ressource",
    ),
    (
        "team.resource_templates_link",
        "The team's resource templates",
        "Les modèles de ressources de l'équipe",
    ),
    (
        "team.resource_categories",
        "Resource categories",
        "Catégories de ressources",
    ),
    (
        "team.new_resource_category",
        "New resource category",
        "Nouvelle catégorie de ressources",
    ),
    ("entity.no_links", "No links yet.", "Pas encore de liens."),
    ("entity.history", "History", "Historique"),
    ("entity.history_link", "All versions", "Toutes les versions"),
    ("entity.duplicate", "Duplicate", "Dupliquer"),
    ("entity.delete", "Delete", "Supprimer"),
    ("entity.restore", "Restore", "Restaurer"),
    ("entity.lock", "Lock", "Verrouiller"),
    ("entity.unlock", "Unlock", "Déverrouiller"),
    (
        "entity.delete_confirm",
        "Delete this entry? It can be restored later.",
        "Supprimer cette entrée ? Elle pourra être restaurée.",
    ),
    (
        "entity.conflicts",
        "Conflicting values",
        "Valeurs en conflit",
    ),
    (
        "entity.conflicts_explain",
        "People changed this field at the same time. Every value is kept until you pick one.",
        "Plusieurs personnes ont modifié ce champ en même temps. Toutes les valeurs sont conservées jusqu'à ce que vous en choisissiez une.",
    ),
    (
        "entity.conflict_keep",
        "Keep this value",
        "Garder cette valeur",
    ),
    ("entity.empty_value", "(empty)", "(vide)"),
    // Access
    ("access.title", "Access", "Accès"),
    ("access.read", "Read access", "Accès en lecture"),
    ("access.write", "Write access", "Accès en écriture"),
    (
        "access.you_read_because",
        "You can read it because",
        "Vous pouvez la lire car",
    ),
    (
        "access.you_write_because",
        "You can change it because",
        "Vous pouvez la modifier car",
    ),
    (
        "access.you_cannot_write",
        "You cannot change it.",
        "Vous ne pouvez pas la modifier.",
    ),
    (
        "access.base_10",
        "the owner only",
        "le propriétaire seulement",
    ),
    (
        "access.base_20",
        "the owner and the team's admins",
        "le propriétaire et les administrateurs de l'équipe",
    ),
    ("access.base_30", "everyone in the team", "toute l'équipe"),
    (
        "access.base_40",
        "every signed-in user of this instance",
        "tous les utilisateurs connectés de cette instance",
    ),
    (
        "access.base_50",
        "everyone, also without an account",
        "tout le monde, même sans compte",
    ),
    (
        "access.plus_teams",
        "plus the teams",
        "ainsi que les équipes",
    ),
    (
        "access.plus_groups",
        "plus the team groups",
        "ainsi que les groupes d'équipe",
    ),
    ("access.plus_users", "plus", "ainsi que"),
    ("access.who_read", "Who can read", "Qui peut lire"),
    ("access.who_write", "Who can write", "Qui peut modifier"),
    (
        "access.grant_owner",
        "you own it",
        "vous en êtes propriétaire",
    ),
    ("access.grant_public", "it is public", "elle est publique"),
    (
        "access.grant_org",
        "every signed-in user may",
        "tout utilisateur connecté le peut",
    ),
    (
        "access.grant_team",
        "you are in its team",
        "vous êtes dans son équipe",
    ),
    (
        "access.grant_admin",
        "you administer its team",
        "vous administrez son équipe",
    ),
    (
        "access.grant_extra_team",
        "one of your teams is listed",
        "une de vos équipes est citée",
    ),
    (
        "access.grant_extra_group",
        "one of your groups is listed",
        "un de vos groupes est cité",
    ),
    (
        "access.grant_extra_user",
        "you are listed by name",
        "vous êtes cité nommément",
    ),
    (
        "access.grant_writer",
        "you may change it",
        "vous pouvez la modifier",
    ),
    ("access.change", "Change access", "Modifier les accès"),
    ("access.base", "Base level", "Niveau de base"),
    (
        "access.extra_teams",
        "Also these teams",
        "Aussi ces équipes",
    ),
    (
        "access.extra_groups",
        "Also these team groups",
        "Aussi ces groupes d'équipe",
    ),
    (
        "access.extra_users",
        "Also these people (e-mails, comma-separated)",
        "Aussi ces personnes (adresses, séparées par des virgules)",
    ),
    // History
    ("history.title", "History", "Historique"),
    (
        "history.intro",
        "Every save is kept. Open any version, or compare two.",
        "Chaque enregistrement est conservé. Ouvrez n'importe quelle version, ou comparez-en deux.",
    ),
    ("history.version", "Version", "Version"),
    ("history.author", "Author", "Auteur"),
    (
        "history.when",
        "Received by the server",
        "Reçue par le serveur",
    ),
    ("history.device_time", "Device time", "Heure de l'appareil"),
    ("history.what", "Change", "Modification"),
    ("history.view", "View", "Voir"),
    (
        "history.compare",
        "Compare selected",
        "Comparer la sélection",
    ),
    ("history.from", "From", "De"),
    ("history.to", "To", "À"),
    ("history.diff_title", "Differences", "Différences"),
    ("history.fields", "Fields", "Champs"),
    (
        "history.no_field_changes",
        "No field changed.",
        "Aucun champ modifié.",
    ),
    ("history.body_changes", "Notes", "Notes"),
    ("history.version_of", "Version of", "Version du"),
    ("history.back", "Back to the entry", "Retour à l'entrée"),
    ("history.current", "current", "actuelle"),
    ("history.msg_create", "created", "création"),
    ("history.msg_save", "saved", "enregistrement"),
    ("history.msg_other", "changed", "modification"),
    // Settings
    ("settings.title", "Settings", "Paramètres"),
    (
        "settings.language",
        "Interface language",
        "Langue de l'interface",
    ),
    ("settings.password", "Password", "Mot de passe"),
    (
        "settings.current_password",
        "Current password",
        "Mot de passe actuel",
    ),
    (
        "settings.new_password",
        "New password",
        "Nouveau mot de passe",
    ),
    (
        "settings.password_changed",
        "Password changed. Other sessions were signed out.",
        "Mot de passe modifié. Les autres sessions ont été déconnectées.",
    ),
    (
        "settings.defaults",
        "Default access for my new entries",
        "Accès par défaut de mes nouvelles entrées",
    ),
    ("settings.apikeys", "API keys", "Clés d'API"),
    ("api.title", "API", "API"),
    (
        "api.intro",
        "Scripts, instruments and eLabFTW's clients use Cahier's REST API (eLabFTW API v2). Everything below is generated from the server itself, so it is always up to date.",
        "Les scripts, les instruments et les clients d'eLabFTW utilisent l'API REST de Cahier (API v2 d'eLabFTW). Tout ce qui suit vient du serveur lui-même et reste donc à jour.",
    ),
    ("api.start", "Getting started", "Pour commencer"),
    (
        "api.step_key",
        "Make an API key (read-only, or read-write for scripts that record data) in your",
        "Créez une clé d'API (lecture seule, ou lecture-écriture pour les scripts qui enregistrent des données) dans vos",
    ),
    (
        "api.step_call",
        "Send it as the Authorization header:",
        "Envoyez-la dans l'en-tête Authorization :",
    ),
    (
        "api.step_python",
        "From Python, eLabFTW's official client works unchanged:",
        "En Python, le client officiel d'eLabFTW fonctionne tel quel :",
    ),
    (
        "api.document",
        "Download the OpenAPI description",
        "Télécharger la description OpenAPI",
    ),
    (
        "api.document_hint",
        "for code generators and API tools.",
        "pour les générateurs de code et les outils d'API.",
    ),
    ("api.method", "Method", "Méthode"),
    ("api.path", "Path", "Chemin"),
    ("api.what", "What it does", "Ce qu'elle fait"),
    (
        "settings.api_docs",
        "API documentation",
        "Documentation de l'API",
    ),
    (
        "settings.apikeys_intro",
        "Scripts and eLabFTW clients use a key in the Authorization header. A key acts as you, in one team.",
        "Les scripts et les clients eLabFTW envoient une clé dans l'en-tête Authorization. Une clé agit en votre nom, dans une équipe.",
    ),
    ("settings.apikey_name", "Key name", "Nom de la clé"),
    (
        "settings.apikey_write",
        "Can change data",
        "Peut modifier les données",
    ),
    (
        "settings.apikey_new",
        "Your new key — copy it now, it will not be shown again:",
        "Votre nouvelle clé — copiez-la maintenant, elle ne sera plus affichée :",
    ),
    ("settings.apikey_readonly", "read only", "lecture seule"),
    (
        "settings.apikey_readwrite",
        "read and write",
        "lecture et écriture",
    ),
    (
        "settings.apikey_last_used",
        "Last used",
        "Dernière utilisation",
    ),
    ("settings.apikey_never", "never", "jamais"),
    ("settings.saved", "Saved.", "Enregistré."),
    // Team admin
    ("team.title", "Team admin", "Administration de l'équipe"),
    ("team.members", "Members", "Membres"),
    (
        "team.add_member",
        "Add a member by e-mail",
        "Ajouter un membre par son adresse",
    ),
    ("team.admin", "Team admin", "Administrateur d'équipe"),
    ("team.make_admin", "Make admin", "Nommer administrateur"),
    (
        "team.revoke_admin",
        "Revoke admin",
        "Retirer l'administration",
    ),
    ("team.groups", "Team groups", "Groupes d'équipe"),
    ("team.new_group", "New group", "Nouveau groupe"),
    ("team.tags", "Tags", "Mots-clés"),
    (
        "team.tags_help",
        "Every tag the team's entries carry. Renaming or removing one changes each entry that carries it, in its history under your name.",
        "Tous les mots-clés des entrées de l'équipe. Renommer ou retirer un mot-clé modifie chaque entrée qui le porte, dans son historique, à votre nom.",
    ),
    (
        "team.no_tags",
        "No tag yet.",
        "Aucun mot-clé pour l'instant.",
    ),
    ("team.tag_entries", "entries", "entrées"),
    (
        "team.tag_rename_to",
        "New text for the tag",
        "Nouveau texte du mot-clé",
    ),
    ("team.tag_rename", "Rename", "Renommer"),
    (
        "team.tag_remove_confirm",
        "Remove this tag from every entry of the team?",
        "Retirer ce mot-clé de toutes les entrées de l'équipe ?",
    ),
    ("team.new_tag", "New tag", "Nouveau mot-clé"),
    (
        "team.tag_new_text_missing",
        "give the new text of the tag",
        "indiquez le nouveau texte du mot-clé",
    ),
    (
        "team.group_members",
        "Members of the group",
        "Membres du groupe",
    ),
    (
        "team.statuses",
        "Experiment statuses",
        "Statuts des expériences",
    ),
    (
        "team.categories",
        "Experiment categories",
        "Catégories d'expériences",
    ),
    ("team.new_status", "New status", "Nouveau statut"),
    ("team.new_category", "New category", "Nouvelle catégorie"),
    (
        "team.not_admin",
        "Only team admins can manage the team.",
        "Seuls les administrateurs d'équipe peuvent gérer l'équipe.",
    ),
    // Sysadmin
    ("admin.title", "Instance admin", "Administration système"),
    ("admin.teams", "Teams", "Équipes"),
    ("admin.new_team", "New team", "Nouvelle équipe"),
    ("admin.users", "Users", "Utilisateurs"),
    ("admin.new_user", "New user", "Nouvel utilisateur"),
    ("admin.sysadmin", "Sysadmin", "Administrateur système"),
    ("admin.archived", "Archived", "Archivé"),
    ("admin.archive", "Archive", "Archiver"),
    ("admin.unarchive", "Reactivate", "Réactiver"),
    ("admin.teams_of_user", "Teams", "Équipes"),
    ("admin.add_to_team", "Add to team", "Ajouter à l'équipe"),
    (
        "admin.not_sysadmin",
        "Only instance admins can see this page.",
        "Seuls les administrateurs système peuvent voir cette page.",
    ),
    // Field replica
    ("replica.field_copy", "Field copy", "Copie de terrain"),
    ("replica.online", "online", "en ligne"),
    (
        "replica.offline",
        "offline — your changes are saved on this device",
        "hors ligne — vos modifications sont enregistrées sur cet appareil",
    ),
    (
        "replica.offline_explain",
        "The lab server cannot be reached; Cahier retries on its own.",
        "Le serveur du laboratoire est injoignable ; Cahier réessaie tout seul.",
    ),
    (
        "replica.last_sync",
        "last sync:",
        "dernière synchronisation :",
    ),
    ("replica.never", "never", "jamais"),
    (
        "replica.waiting",
        "entries with changes waiting",
        "entrées avec des modifications en attente",
    ),
    (
        "replica.rejected",
        "rejected edits",
        "modifications refusées",
    ),
    ("replica.sync_now", "Sync now", "Synchroniser maintenant"),
    (
        "replica.rejected_title",
        "Rejected edits",
        "Modifications refusées",
    ),
    (
        "replica.rejected_intro",
        "The lab server refused these changes made on this device. Nothing is lost: they are kept here and on the server, where the entry's owner or an admin can apply them.",
        "Le serveur du laboratoire a refusé ces modifications faites sur cet appareil. Rien n'est perdu : elles sont conservées ici et sur le serveur, où le propriétaire de l'entrée ou un administrateur peut les appliquer.",
    ),
    ("replica.reason", "Reason", "Raison"),
    (
        "replica.no_rejected",
        "No rejected edits.",
        "Aucune modification refusée.",
    ),
    (
        "replica.not_replica",
        "This page exists only on a field copy.",
        "Cette page n'existe que sur une copie de terrain.",
    ),
    (
        "settings.devices",
        "Field copies (devices)",
        "Copies de terrain (appareils)",
    ),
    (
        "settings.devices_intro",
        "Laptops holding a copy of your notebook. Revoke a lost one: it stops syncing at once.",
        "Les ordinateurs qui ont une copie de votre cahier. Révoquez celui qui est perdu : il ne se synchronise plus.",
    ),
    ("settings.device_revoke", "Revoke", "Révoquer"),
    ("settings.device_revoked", "revoked", "révoqué"),
    (
        "settings.no_devices",
        "No field copy yet.",
        "Aucune copie de terrain pour l'instant.",
    ),
    (
        "entity.session_ended",
        "Your session has ended: sign in again in another tab; your text is kept here and will be saved.",
        "Votre session a pris fin : reconnectez-vous dans un autre onglet ; votre texte est conservé ici et sera enregistré.",
    ),
    (
        "replica.file_absent",
        "This file is not on this laptop. It will be fetched when the lab server can be reached; to keep an entry's files here, pin it \"Available offline\".",
        "Ce fichier n'est pas sur cet ordinateur. Il sera récupéré quand le serveur du laboratoire sera joignable ; pour garder ici les fichiers d'une entrée, cochez « Disponible hors ligne ».",
    ),
    (
        "replica.file_absent_short",
        "Not on this laptop",
        "Pas sur cet ordinateur",
    ),
    (
        "replica.file_absent_hint",
        "fetched when online",
        "récupéré une fois en ligne",
    ),
    (
        "replica.available_offline",
        "Available offline",
        "Disponible hors ligne",
    ),
    (
        "replica.pin_hint",
        "Keeps this entry's files on this laptop.",
        "Garde les fichiers de cette entrée sur cet ordinateur.",
    ),
    ("replica.files_label", "Files:", "Fichiers :"),
    ("replica.pinned_badge", "offline", "hors ligne"),
    (
        "replica.files_title",
        "Files on this laptop",
        "Fichiers sur cet ordinateur",
    ),
    (
        "replica.files_intro",
        "Entries themselves (text, fields, comments) are always all here; only attached files are optional. A file not kept here is fetched when you open it while the lab server can be reached. Files of changes not yet sent are never removed.",
        "Les entrées elles-mêmes (texte, champs, commentaires) sont toujours toutes ici ; seuls les fichiers joints sont facultatifs. Un fichier absent est récupéré quand vous l'ouvrez si le serveur du laboratoire est joignable. Les fichiers de modifications pas encore envoyées ne sont jamais supprimés.",
    ),
    ("replica.files_policy", "Files kept", "Fichiers conservés"),
    ("replica.files_all", "all files", "tous les fichiers"),
    (
        "replica.files_pinned",
        "only entries marked available offline",
        "seulement les entrées disponibles hors ligne",
    ),
    (
        "replica.files_teams",
        "only these teams' files (and entries marked available offline)",
        "seulement les fichiers de ces équipes (et les entrées disponibles hors ligne)",
    ),
    (
        "replica.files_held",
        "files on this laptop",
        "fichiers sur cet ordinateur",
    ),
    (
        "replica.files_not_held",
        "not here (fetched on demand when online)",
        "absents (récupérés à la demande une fois en ligne)",
    ),
    ("replica.files_save", "Save", "Enregistrer"),
    (
        "replica.files_no_team",
        "choose at least one team",
        "choisissez au moins une équipe",
    ),
    (
        "replica.pinned_title",
        "Entries available offline",
        "Entrées disponibles hors ligne",
    ),
    (
        "replica.no_pinned",
        "No entry is marked available offline.",
        "Aucune entrée n'est marquée disponible hors ligne.",
    ),
    (
        "replica.unlock_title",
        "Unlock this field copy",
        "Déverrouiller cette copie de terrain",
    ),
    (
        "replica.unlock_intro",
        "This notebook is encrypted on this computer. Enter the passphrase chosen when the copy was made. It locks again after a while without use.",
        "Ce cahier est chiffré sur cet ordinateur. Saisissez la phrase de passe choisie à la création de la copie. Il se verrouille de nouveau après un moment sans utilisation.",
    ),
    ("replica.passphrase", "Passphrase", "Phrase de passe"),
    ("replica.unlock", "Unlock", "Déverrouiller"),
    (
        "replica.wrong_passphrase",
        "Wrong passphrase. Nothing was changed; try again.",
        "Phrase de passe incorrecte. Rien n'a été modifié ; réessayez.",
    ),
    // Stock of resources
    ("stock.title", "Stock", "Stock"),
    ("stock.quantity", "Quantity", "Quantité"),
    ("stock.threshold", "Reorder threshold", "Seuil de commande"),
    (
        "stock.threshold_line",
        "To reorder at or below:",
        "À commander à partir de :",
    ),
    (
        "stock.low_explain",
        "Low stock: at or below the reorder threshold.",
        "Stock bas : au seuil de commande ou en dessous.",
    ),
    (
        "stock.negative_explain",
        "Below zero: more was recorded as used than was in stock. Check the history, then record a restock or a correction.",
        "En dessous de zéro : plus a été consommé que ce qui était en stock. Vérifiez l'historique, puis enregistrez un réapprovisionnement ou une correction.",
    ),
    ("stock.low_badge", "low stock", "stock bas"),
    ("stock.negative_badge", "below zero", "négatif"),
    ("stock.record", "Record", "Enregistrer"),
    ("stock.consume", "Consumption", "Consommation"),
    ("stock.restock", "Restock", "Réapprovisionnement"),
    ("stock.adjust", "Correction", "Correction"),
    ("stock.amount", "Amount", "Quantité"),
    (
        "stock.amount_hint",
        "A number with at most 3 decimals, like 2.5. For a correction, a negative number lowers the stock.",
        "Un nombre avec au plus 3 décimales, comme 2,5. Pour une correction, un nombre négatif diminue le stock.",
    ),
    (
        "stock.experiment",
        "Experiment (optional)",
        "Expérience (facultatif)",
    ),
    (
        "stock.experiment_hint",
        "The experiment's number, shown on its page.",
        "Le numéro de l'expérience, affiché sur sa page.",
    ),
    ("stock.note", "Note (optional)", "Note (facultatif)"),
    ("stock.save_event", "Record", "Enregistrer"),
    ("stock.history", "History", "Historique"),
    (
        "stock.no_events",
        "Nothing recorded yet.",
        "Rien n'a encore été enregistré.",
    ),
    ("stock.device_time", "recorded", "saisi le"),
    (
        "stock.received_time",
        "received by the server",
        "reçu par le serveur le",
    ),
    ("stock.for_experiment", "for", "pour"),
    ("stock.full_history", "Full history", "Historique complet"),
    (
        "stock.not_tracked",
        "The stock of this resource is not tracked.",
        "Le stock de cette ressource n'est pas suivi.",
    ),
    ("stock.settings", "Unit and threshold", "Unité et seuil"),
    ("stock.enable", "Track the stock", "Suivre le stock"),
    ("stock.enable_button", "Track the stock", "Suivre le stock"),
    ("stock.unit", "Unit", "Unité"),
    (
        "stock.unit_hint",
        "What the quantity is counted in, like mL, g or units.",
        "Ce en quoi la quantité est comptée, comme mL, g ou unités.",
    ),
    (
        "stock.initial",
        "Quantity in stock now",
        "Quantité en stock maintenant",
    ),
    (
        "stock.refused",
        "Nothing was recorded:",
        "Rien n'a été enregistré :",
    ),
    (
        "stock.error_action",
        "choose consumption, restock or correction",
        "choisissez consommation, réapprovisionnement ou correction",
    ),
    (
        "stock.error_experiment",
        "give the experiment's number, like 42, or leave it empty",
        "indiquez le numéro de l'expérience, comme 42, ou laissez vide",
    ),
    ("stock.reorder_title", "To reorder", "À commander"),
    ("stock.dashboard_title", "Low in stock", "Stock bas"),
    (
        "stock.reorder_explain",
        "Resources of your team at or below their reorder threshold, the most urgent first.",
        "Ressources de votre équipe au seuil de commande ou en dessous, les plus urgentes d'abord.",
    ),
    (
        "stock.reorder_empty",
        "Nothing to reorder.",
        "Rien à commander.",
    ),
    // Booking calendar (issue #4).
    ("nav.calendar", "Calendar", "Calendrier"),
    ("booking.calendar", "Calendar", "Calendrier"),
    (
        "booking.calendar_link",
        "Booking calendar",
        "Calendrier des réservations",
    ),
    (
        "booking.book_for_experiment",
        "Book for this experiment",
        "Réserver pour cette expérience",
    ),
    (
        "booking.team_calendar",
        "Team calendar",
        "Calendrier de l'équipe",
    ),
    (
        "booking.back_to_resource",
        "Back to the resource",
        "Retour à la ressource",
    ),
    (
        "booking.navigation",
        "Calendar navigation",
        "Navigation dans le calendrier",
    ),
    ("booking.previous", "← Previous", "← Précédent"),
    ("booking.next", "Next →", "Suivant →"),
    ("booking.today", "Today", "Aujourd'hui"),
    ("booking.week", "Week", "Semaine"),
    ("booking.month", "Month", "Mois"),
    ("booking.hour", "Hour", "Heure"),
    (
        "booking.no_bookable",
        "No bookable resource here yet. The owner of a resource or a team admin can allow bookings on the resource's calendar page.",
        "Aucune ressource réservable ici pour l'instant. Le propriétaire d'une ressource ou un administrateur d'équipe peut autoriser les réservations sur la page calendrier de la ressource.",
    ),
    (
        "booking.drag_hint",
        "Drag over the hours of a day to book them, or use the form.",
        "Faites glisser sur les heures d'un jour pour les réserver, ou utilisez le formulaire.",
    ),
    ("booking.new", "New booking", "Nouvelle réservation"),
    ("booking.title", "What for", "Objet"),
    ("booking.start", "Start", "Début"),
    ("booking.end", "End", "Fin"),
    (
        "booking.experiment",
        "Experiment (optional)",
        "Expérience (facultatif)",
    ),
    (
        "booking.experiment_hint",
        "The number of the experiment this booking serves, e.g. 42.",
        "Le numéro de l'expérience que sert cette réservation, par exemple 42.",
    ),
    ("booking.book", "Book", "Réserver"),
    (
        "booking.list",
        "Bookings in this period",
        "Réservations de la période",
    ),
    (
        "booking.none",
        "No booking in this period.",
        "Aucune réservation dans cette période.",
    ),
    ("booking.for_experiment", "for", "pour"),
    ("booking.approve", "Approve", "Approuver"),
    ("booking.refuse", "Refuse", "Refuser"),
    ("booking.cancel", "Cancel booking", "Annuler la réservation"),
    ("booking.state_confirmed", "confirmed", "confirmée"),
    (
        "booking.state_pending",
        "waiting for approval",
        "en attente d'approbation",
    ),
    ("booking.state_cancelled", "cancelled", "annulée"),
    ("booking.state_refused", "refused", "refusée"),
    (
        "booking.state_requested",
        "pending confirmation",
        "en attente de confirmation",
    ),
    (
        "booking.state_request_refused",
        "refused by the lab server",
        "refusée par le serveur du laboratoire",
    ),
    (
        "booking.refusal_overlap",
        "The slot was already booked",
        "Le créneau était déjà réservé",
    ),
    (
        "booking.refusal_forbidden",
        "You may not book this resource",
        "Vous ne pouvez pas réserver cette ressource",
    ),
    (
        "booking.refusal_invalid",
        "The booking breaks a rule of the resource",
        "La réservation enfreint une règle de la ressource",
    ),
    (
        "booking.refusal_not_found",
        "The resource or experiment is not on the lab server, or you may no longer read it",
        "La ressource ou l'expérience n'est pas sur le serveur du laboratoire, ou vous ne pouvez plus la lire",
    ),
    (
        "booking.refusal_other",
        "Refused by the lab server",
        "Refusée par le serveur du laboratoire",
    ),
    ("booking.refused_because", "Refused:", "Refusée :"),
    ("booking.withdraw", "Withdraw request", "Retirer la demande"),
    ("booking.dismiss", "Dismiss", "Masquer"),
    (
        "booking.change_cancel",
        "Cancellation asked for",
        "Annulation demandée",
    ),
    (
        "booking.change_move",
        "Move asked for",
        "Déplacement demandé",
    ),
    (
        "booking.change_approve",
        "Approval asked for",
        "Approbation demandée",
    ),
    (
        "booking.change_refuse",
        "Refusal asked for",
        "Refus demandé",
    ),
    ("booking.change_move_to", "to", "vers"),
    (
        "booking.change_pending",
        "pending confirmation by the lab server at the next sync",
        "en attente de confirmation par le serveur du laboratoire à la prochaine synchronisation",
    ),
    (
        "booking.change_pending_short",
        "pending confirmation",
        "en attente de confirmation",
    ),
    (
        "booking.withdraw_change",
        "Withdraw this request",
        "Retirer cette demande",
    ),
    (
        "booking.notice_change_requested",
        "Change recorded: the lab server decides it at the next sync.",
        "Modification enregistrée : le serveur du laboratoire la décidera à la prochaine synchronisation.",
    ),
    (
        "booking.notice_requested",
        "Booking requested: pending confirmation by the lab server at the next sync.",
        "Réservation demandée : en attente de confirmation par le serveur du laboratoire à la prochaine synchronisation.",
    ),
    (
        "booking.notice_withdrawn",
        "Request withdrawn.",
        "Demande retirée.",
    ),
    (
        "booking.notice_dismissed",
        "Refusal dismissed.",
        "Refus masqué.",
    ),
    (
        "booking.move_open",
        "Move this booking",
        "Déplacer cette réservation",
    ),
    ("booking.move", "Move", "Déplacer"),
    ("booking.move_start", "New start", "Nouveau début"),
    ("booking.move_end", "New end", "Nouvelle fin"),
    (
        "booking.move_replica_hint",
        "On this field copy, moving a lab booking is a request: the lab server decides it at the next sync.",
        "Sur cette copie de terrain, déplacer une réservation du laboratoire est une demande : le serveur du laboratoire la décidera à la prochaine synchronisation.",
    ),
    (
        "booking.notice_moved",
        "Booking moved.",
        "Réservation déplacée.",
    ),
    (
        "booking.notice_request_moved",
        "Request changed: still pending confirmation by the lab server at the next sync.",
        "Demande modifiée : toujours en attente de confirmation par le serveur du laboratoire à la prochaine synchronisation.",
    ),
    (
        "booking.feeds_replica",
        "These addresses belong to this field copy: they answer on this laptop only, while the copy is running and unlocked, and list the lab's bookings as last synced with your requests still pending. The lab server's addresses are different.",
        "Ces adresses appartiennent à cette copie de terrain : elles répondent sur cet ordinateur seulement, tant que la copie est ouverte et déverrouillée, et listent les réservations du laboratoire telles qu'à la dernière synchronisation, avec vos demandes encore en attente. Celles du serveur du laboratoire sont différentes.",
    ),
    (
        "booking.feed_requested",
        "Asked for on a field copy: pending confirmation by the lab server at the next sync",
        "Demandée sur une copie de terrain : en attente de confirmation par le serveur du laboratoire à la prochaine synchronisation",
    ),
    (
        "booking.feed_lab_times",
        "now at the lab",
        "actuellement au laboratoire",
    ),
    (
        "replica.booking_waiting",
        "booking requests pending confirmation",
        "demandes de réservation en attente de confirmation",
    ),
    (
        "replica.booking_refused",
        "refused booking requests",
        "demandes de réservation refusées",
    ),
    (
        "replica.refused_bookings_title",
        "Refused booking requests",
        "Demandes de réservation refusées",
    ),
    (
        "replica.refused_bookings_intro",
        "The lab server refused these bookings asked for on this device. Nothing was booked; choose another slot in the calendar, then dismiss them.",
        "Le serveur du laboratoire a refusé ces réservations demandées sur cet appareil. Rien n'a été réservé ; choisissez un autre créneau dans le calendrier, puis masquez-les.",
    ),
    ("booking.rules", "Booking rules", "Règles de réservation"),
    (
        "booking.rule_not_bookable",
        "This resource cannot be booked.",
        "Cette ressource n'est pas réservable.",
    ),
    (
        "booking.rule_overlap",
        "Bookings may overlap.",
        "Les réservations peuvent se chevaucher.",
    ),
    (
        "booking.rule_no_overlap",
        "One booking at a time.",
        "Une seule réservation à la fois.",
    ),
    (
        "booking.rule_max_minutes",
        "Longest booking:",
        "Durée maximale d'une réservation :",
    ),
    (
        "booking.rule_max_slots",
        "Upcoming bookings per person, at most:",
        "Réservations à venir par personne, au plus :",
    ),
    (
        "booking.rule_window_days",
        "Days ahead one may book:",
        "Jours à l'avance pour réserver :",
    ),
    (
        "booking.rule_not_cancellable",
        "Only the owner or a team admin can cancel bookings.",
        "Seuls le propriétaire ou un administrateur d'équipe peuvent annuler les réservations.",
    ),
    (
        "booking.rule_cancel_minutes",
        "Cancel at the latest this long before the start:",
        "Annulation au plus tard ce délai avant le début :",
    ),
    (
        "booking.rule_approval",
        "Bookings wait for the approval of the owner or a team admin.",
        "Les réservations attendent l'approbation du propriétaire ou d'un administrateur d'équipe.",
    ),
    ("booking.field_bookable", "Bookable", "Réservable"),
    (
        "booking.field_overlap",
        "Bookings may overlap",
        "Les réservations peuvent se chevaucher",
    ),
    (
        "booking.field_max_minutes",
        "Longest booking (minutes)",
        "Durée maximale (minutes)",
    ),
    (
        "booking.field_max_slots",
        "Upcoming bookings per person",
        "Réservations à venir par personne",
    ),
    (
        "booking.field_window_days",
        "Booking window (days ahead)",
        "Fenêtre de réservation (jours à l'avance)",
    ),
    (
        "booking.field_cancellable",
        "Bookers may cancel",
        "Les réservants peuvent annuler",
    ),
    (
        "booking.field_cancel_minutes",
        "Cancellation deadline (minutes before the start)",
        "Délai d'annulation (minutes avant le début)",
    ),
    (
        "booking.field_approval",
        "Bookings need my approval (or a team admin's)",
        "Les réservations demandent mon approbation (ou celle d'un administrateur d'équipe)",
    ),
    (
        "booking.empty_no_limit",
        "Leave a number empty for no limit.",
        "Laissez un nombre vide pour ne pas fixer de limite.",
    ),
    ("booking.feeds", "Calendar feeds", "Abonnements agenda"),
    (
        "booking.feeds_intro",
        "Subscribe to these addresses in Thunderbird, Outlook or your phone's calendar. Anyone with the address sees the bookings: keep it private, renew it if it leaks.",
        "Abonnez-vous à ces adresses dans Thunderbird, Outlook ou l'agenda de votre téléphone. Quiconque connaît l'adresse voit les réservations : gardez-la privée, renouvelez-la si elle a fuité.",
    ),
    (
        "booking.feed_resource",
        "This resource's bookings",
        "Réservations de cette ressource",
    ),
    ("booking.feed_mine", "My bookings", "Mes réservations"),
    (
        "booking.feed_copy_hint",
        "Select the address and copy it (Ctrl+C) into your calendar application.",
        "Sélectionnez l'adresse et copiez-la (Ctrl+C) dans votre application d'agenda.",
    ),
    (
        "booking.feed_create",
        "Create my feed addresses",
        "Créer mes adresses d'abonnement",
    ),
    (
        "booking.feed_renew",
        "Renew the addresses (the old ones stop working)",
        "Renouveler les adresses (les anciennes cessent de fonctionner)",
    ),
    (
        "booking.feed_revoke",
        "Turn the feeds off",
        "Désactiver les abonnements",
    ),
    ("booking.notice_booked", "Booked.", "Réservé."),
    (
        "booking.notice_pending",
        "Booking requested: it waits for approval.",
        "Réservation demandée : elle attend une approbation.",
    ),
    (
        "booking.notice_cancelled",
        "Booking cancelled.",
        "Réservation annulée.",
    ),
    (
        "booking.notice_approved",
        "Booking approved.",
        "Réservation approuvée.",
    ),
    (
        "booking.notice_refused",
        "Booking refused.",
        "Réservation refusée.",
    ),
    (
        "booking.notice_rules",
        "Booking rules saved.",
        "Règles de réservation enregistrées.",
    ),
    (
        "booking.notice_feed",
        "Calendar feed addresses updated.",
        "Adresses d'abonnement mises à jour.",
    ),
    ("booking.mon", "Mon", "Lun"),
    ("booking.tue", "Tue", "Mar"),
    ("booking.wed", "Wed", "Mer"),
    ("booking.thu", "Thu", "Jeu"),
    ("booking.fri", "Fri", "Ven"),
    ("booking.sat", "Sat", "Sam"),
    ("booking.sun", "Sun", "Dim"),
    // Archival PDF of an entity (cahier-pdf): the download link and the words of the PDF.
    ("pdf.download", "PDF (archive)", "PDF (archivage)"),
    (
        "pdf.download_hint",
        "PDF/A-2b file of this entry, for printing and archiving",
        "Fichier PDF/A-2b de cette entrée, pour l'impression et l'archivage",
    ),
    ("pdf.experiment", "Experiment", "Expérience"),
    ("pdf.resource", "Resource", "Ressource"),
    ("pdf.template", "Template", "Modèle"),
    ("pdf.owner", "Owner", "Propriétaire"),
    ("pdf.team", "Team", "Équipe"),
    ("pdf.created", "Created (UTC)", "Créée (UTC)"),
    ("pdf.modified", "Modified (UTC)", "Modifiée (UTC)"),
    ("pdf.date", "Date", "Date"),
    ("pdf.status", "Status", "Statut"),
    ("pdf.category", "Category", "Catégorie"),
    ("pdf.tags", "Tags", "Mots-clés"),
    ("pdf.fields", "Fields", "Champs"),
    ("pdf.steps", "Steps", "Étapes"),
    ("pdf.links", "Links", "Liens"),
    ("pdf.attachments", "Attachments", "Pièces jointes"),
    ("pdf.history", "History", "Historique"),
    (
        "pdf.offline_capture",
        "Captured offline: {n} change(s) from field device(s) {devices}. Device clock {device_from} to {device_to} (the device's own clock, not proven); received by the server {received_from} to {received_to}.",
        "Saisi hors ligne : {n} modification(s) venue(s) d'appareil(s) de terrain {devices}. Horloge de l'appareil du {device_from} au {device_to} (horloge propre à l'appareil, non prouvée) ; reçu par le serveur du {received_from} au {received_to}.",
    ),
    ("pdf.versions", "Versions", "Versions"),
    ("pdf.last_change", "Last change", "Dernière modification"),
    (
        "pdf.timestamps",
        "Trusted timestamps",
        "Horodatages certifiés",
    ),
    ("pdf.signatures", "Signatures", "Signatures"),
    ("pdf.name", "Name", "Nom"),
    ("pdf.value", "Value", "Valeur"),
    ("pdf.size", "Size (bytes)", "Taille (octets)"),
    ("pdf.done", "done by", "faite par"),
    ("pdf.none", "None.", "Aucun."),
    ("pdf.contents", "Contents", "Sommaire"),
    (
        "pdf.printed",
        "Printed by Cahier at",
        "Imprimé par Cahier le",
    ),
    // .eln exchange (import, exports)
    ("nav.exports", "Exports", "Exports"),
    (
        "exchange.import_title",
        "Import an .eln archive",
        "Importer une archive .eln",
    ),
    (
        "exchange.import_intro",
        "An .eln file from Cahier, eLabFTW, Kadi4Mat, RSpace, SampleDB, PASTA or another ELN: each entry it holds becomes an experiment or a resource. You will see what will be created before anything is.",
        "Un fichier .eln de Cahier, eLabFTW, Kadi4Mat, RSpace, SampleDB, PASTA ou d'un autre cahier : chaque entrée qu'il contient devient une expérience ou une ressource. Vous verrez ce qui sera créé avant que rien ne le soit.",
    ),
    ("exchange.file", "Archive (.eln)", "Archive (.eln)"),
    ("exchange.team", "Team", "Équipe"),
    ("exchange.target", "Create as", "Créer en tant que"),
    (
        "exchange.target_auto",
        "As in the archive",
        "Comme dans l'archive",
    ),
    ("exchange.preview_button", "Preview", "Aperçu"),
    (
        "exchange.preview_title",
        "What the import will create",
        "Ce que l'import va créer",
    ),
    (
        "exchange.preview_intro",
        "Nothing is created until you confirm. Files are checked against their SHA-256 during the import.",
        "Rien n'est créé avant votre confirmation. Les fichiers sont vérifiés par leur SHA-256 pendant l'import.",
    ),
    ("exchange.publisher", "Published by", "Publié par"),
    (
        "exchange.signed",
        "The archive carries a signature of its metadata (not verified).",
        "L'archive porte une signature de ses métadonnées (non vérifiée).",
    ),
    ("exchange.col_title", "Title", "Titre"),
    ("exchange.col_kind", "Kind", "Type"),
    ("exchange.col_steps", "Steps", "Étapes"),
    ("exchange.col_comments", "Comments", "Commentaires"),
    ("exchange.col_authors", "Authors", "Auteurs"),
    ("exchange.files", "files", "fichiers"),
    ("exchange.notes", "Notes", "Remarques"),
    ("exchange.confirm", "Import", "Importer"),
    ("exchange.report_title", "Import report", "Rapport d'import"),
    ("exchange.created", "entries created", "entrées créées"),
    (
        "exchange.refused_files",
        "Files refused",
        "Fichiers refusés",
    ),
    (
        "exchange.import_another",
        "Import another archive",
        "Importer une autre archive",
    ),
    ("exchange.exports_title", "Exports", "Exports"),
    (
        "exchange.exports_intro",
        "Exports run in the background; come back to download them when they are done. They contain only what you may read.",
        "Les exports se font en arrière-plan ; revenez les télécharger quand ils sont terminés. Ils ne contiennent que ce que vous pouvez lire.",
    ),
    (
        "exchange.export_mine",
        "Export my notebook (.eln)",
        "Exporter mon cahier (.eln)",
    ),
    (
        "exchange.export_team",
        "Export the team's notebook (.eln)",
        "Exporter le cahier de l'équipe (.eln)",
    ),
    (
        "exchange.export_entry",
        "Export as .eln",
        "Exporter en .eln",
    ),
    ("exchange.refresh", "Refresh", "Actualiser"),
    (
        "exchange.pdf_title",
        "archival PDF of a selection",
        "PDF d'archive d'une sélection",
    ),
    ("exchange.format", "Format", "Format"),
    ("exchange.format_eln", ".eln (RO-Crate)", ".eln (RO-Crate)"),
    (
        "exchange.format_zip",
        "ZIP (JSON, PDF, attachments)",
        "ZIP (JSON, PDF, pièces jointes)",
    ),
    (
        "exchange.format_zipa",
        "ZIP with PDF/A-3b and proofs",
        "ZIP avec PDF/A-3b et preuves",
    ),
    (
        "exchange.format_pdf",
        "One archival PDF (PDF/A-2b)",
        "Un PDF d'archive (PDF/A-2b)",
    ),
    (
        "exchange.format_pdfa",
        "One PDF/A-3b with proofs",
        "Un PDF/A-3b avec preuves",
    ),
    ("exchange.col_format", "Format", "Format"),
    (
        "exchange.no_exports",
        "No export yet.",
        "Aucun export pour l'instant.",
    ),
    ("exchange.col_what", "Contents", "Contenu"),
    ("exchange.col_when", "Asked on", "Demandé le"),
    ("exchange.col_state", "State", "État"),
    ("exchange.col_progress", "Progress", "Avancement"),
    ("exchange.download", "Download", "Télécharger"),
    ("exchange.scope_mine", "My notebook", "Mon cahier"),
    (
        "exchange.scope_team",
        "The team's notebook",
        "Le cahier de l'équipe",
    ),
    ("exchange.scope_entries", "entries", "entrées"),
    ("exchange.state_done", "Done", "Terminé"),
    ("exchange.state_failed", "Failed", "Échec"),
    ("exchange.state_running", "Running", "En cours"),
    ("exchange.state_queued", "Waiting", "En attente"),
    (
        "exchange.export_page",
        "Export the entries of this page (.eln)",
        "Exporter les entrées de cette page (.eln)",
    ),
    (
        "exchange.export_csv",
        "This search as CSV",
        "Cette recherche en CSV",
    ),
    (
        "exchange.export_json",
        "This search as JSON",
        "Cette recherche en JSON",
    ),
    // Exports on a field copy that lacks some attachment files (issue #5)
    (
        "export.missing_heading",
        "Attachment files missing from this export. This field copy does not hold them and could not get them from the lab server; export again once the lab server can be reached to have them.",
        "Pièces jointes absentes de cet export. Cette copie de terrain ne les détient pas et n'a pas pu les obtenir du serveur du laboratoire ; exportez à nouveau quand il sera joignable pour les avoir.",
    ),
    (
        "export.missing_pdf",
        "Not in this PDF:",
        "Absent de ce PDF :",
    ),
    (
        "export.missing_summary",
        "{n} attachment file(s) left out:",
        "{n} pièce(s) jointe(s) laissée(s) de côté :",
    ),
    ("export.missing_more", "and {n} more", "et {n} autre(s)"),
    (
        "export.missing_unreachable",
        "not on this laptop, and the lab server could not be reached",
        "pas sur cet ordinateur, et le serveur du laboratoire est injoignable",
    ),
    (
        "export.missing_not_served",
        "not on this laptop, and the lab server did not send it to this device",
        "pas sur cet ordinateur, et le serveur du laboratoire ne l'a pas envoyé à cet appareil",
    ),
    (
        "export.missing_no_server",
        "not on this laptop, and there is no lab server to ask",
        "pas sur cet ordinateur, et il n'y a pas de serveur de laboratoire à qui le demander",
    ),
    // Booking calendar: time zones, canbook, the experiment picker, offline requests (issue #4)
    ("settings.time_zone", "Time zone", "Fuseau horaire"),
    (
        "settings.time_zone_hint",
        "Calendar times are shown and entered in this zone. Empty: the instance's,",
        "Les heures du calendrier sont affichées et saisies dans ce fuseau. Vide : celui de l'instance,",
    ),
    (
        "admin.time_zone",
        "Instance time zone",
        "Fuseau horaire de l'instance",
    ),
    ("access.who_book", "Who can book", "Qui peut réserver"),
    (
        "booking.experiment_matches",
        "Matching experiments",
        "Expériences correspondantes",
    ),
    (
        "booking.experiment_picker_hint",
        "Type part of the title or the number of an experiment you can read, then choose it.",
        "Tapez une partie du titre ou le numéro d'une expérience que vous pouvez lire, puis choisissez-la.",
    ),
    (
        "booking.picker_none",
        "No matching experiment",
        "Aucune expérience correspondante",
    ),
    (
        "booking.picker_count",
        "experiments found",
        "expériences trouvées",
    ),
    ("access.book", "Booking", "Réservation"),
    (
        "access.book_same_as_read",
        "same as who can read",
        "comme pour la lecture",
    ),
    (
        "access.book_hint",
        "The owner and the team's admins can always book. Only readers can book.",
        "Le propriétaire et les admins de l'équipe peuvent toujours réserver. Seuls les lecteurs peuvent réserver.",
    ),
    (
        "access.you_may_book",
        "You can book this resource.",
        "Vous pouvez réserver cette ressource.",
    ),
    (
        "access.you_may_not_book",
        "You cannot book this resource; ask its owner or a team admin.",
        "Vous ne pouvez pas réserver cette ressource ; demandez à son propriétaire ou à un admin de l'équipe.",
    ),
    (
        "admin.time_zone_hint",
        "An IANA name such as Europe/Paris; empty: the configured or server zone. Now:",
        "Un nom IANA comme Europe/Paris ; vide : celui de la configuration ou du serveur. Actuellement :",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,fr;q=0.8"),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language("de-DE,fr;q=0.5,en;q=0.4"),
            Lang::Fr
        );
        assert_eq!(Lang::from_accept_language("de"), Lang::Fr);
        assert_eq!(Lang::from_accept_language(""), Lang::Fr);
    }

    #[test]
    fn keys_are_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for (key, en, fr) in STRINGS {
            assert!(seen.insert(key), "duplicate key {key}");
            assert!(
                !en.is_empty() && !fr.is_empty(),
                "{key} lacks a translation"
            );
        }
    }

    #[test]
    fn every_key_used_in_templates_and_code_exists() {
        let known: std::collections::HashSet<&str> = STRINGS.iter().map(|(k, _, _)| *k).collect();
        // As `cargo test` gives it when running, not as built in (see cahier-core's golden).
        let root = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
        );
        let root = root.as_path();
        let mut files = Vec::new();
        for dir in ["templates", "src", "src/ui", "src/api"] {
            if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
                files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        }
        let mut missing = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for pattern in ["t(\"", "tk(\""] {
                // Only calls of `t`/`tk` themselves, not of `safe_component(` and the like.
                let calls = text.match_indices(pattern).filter(|(at, _)| {
                    !text[..*at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                for (at, _) in calls {
                    let piece = &text[at + pattern.len()..];
                    if let Some(key) = piece.split('"').next()
                        && key.contains('.')
                        && !key.contains(' ')
                        && !known.contains(key)
                    {
                        missing.push(format!("{}: {key}", file.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "missing translations: {missing:#?}");
    }
}
