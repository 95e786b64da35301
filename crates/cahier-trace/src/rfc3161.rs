//! RFC 3161: building a TimeStampReq, reading a TimeStampResp, and checking it.
//!
//! The fields we compare (status, message imprint, nonce, genTime, signer certificate and its
//! extendedKeyUsage) are read here in Rust. The CMS signature and the path to the configured
//! roots are checked by `openssl ts -verify`, the same tool auditors use on the archive; it is
//! run without a shell, with fixed arguments and a timeout ([`openssl_ts_verify`]).

use crate::der::{self, DerError, Tlv, tag};
use crate::{HashAlg, TraceError};
use std::path::Path;
use std::time::Duration;

const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
const OID_TST_INFO: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x04,
];
const OID_EKU: &[u8] = &[0x55, 0x1D, 0x25];
const OID_SKI: &[u8] = &[0x55, 0x1D, 0x0E];
const OID_TIME_STAMPING: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0A];

/// Longest wait for `openssl`.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(20);

/// A request ready to send, with what the answer must match.
#[derive(Debug, Clone)]
pub struct Request {
    /// DER TimeStampReq.
    pub der: Vec<u8>,
    /// The imprint's algorithm.
    pub alg: HashAlg,
    /// Hash of the stamped data.
    pub digest: Vec<u8>,
    /// Content octets of our nonce INTEGER.
    pub nonce: Vec<u8>,
}

/// Builds a TimeStampReq (version 1, imprint, nonce, certReq true). `nonce_bytes` come from
/// the caller's random source.
pub fn request(alg: HashAlg, digest: &[u8], nonce_bytes: [u8; 8]) -> Request {
    let mut nonce = nonce_bytes.to_vec();
    // Positive, and minimal (the first byte is neither 0 nor has its high bit set).
    nonce[0] = (nonce[0] & 0x7F) | 0x40;
    let algorithm = der::write(
        tag::SEQUENCE,
        &[der::write(tag::OID, alg.oid()), der::write(tag::NULL, &[])].concat(),
    );
    let imprint = der::write(
        tag::SEQUENCE,
        &[algorithm, der::write(tag::OCTET_STRING, digest)].concat(),
    );
    let body = [
        der::write(tag::INTEGER, &[1]),
        imprint,
        der::write(tag::INTEGER, &nonce),
        der::write(tag::BOOLEAN, &[0xFF]),
    ]
    .concat();
    Request {
        der: der::write(tag::SEQUENCE, &body),
        alg,
        digest: digest.to_vec(),
        nonce,
    }
}

/// What a checked token says.
#[derive(Debug, Clone)]
pub struct Token {
    /// genTime, ms since the epoch.
    pub gen_time_ms: i64,
    /// The TSA's name (signer certificate's CN, else O).
    pub tsa_name: String,
    /// The certificates the token carries, DER.
    pub certificates: Vec<Vec<u8>>,
}

fn bad(message: impl Into<String>) -> TraceError {
    TraceError::BadAnswer(message.into())
}

impl From<DerError> for TraceError {
    fn from(error: DerError) -> Self {
        bad(format!(
            "the TSA's answer is not a valid time-stamp response ({error})"
        ))
    }
}

/// Reads a TimeStampResp and checks everything but the signature and the chain: status
/// granted, imprint and nonce equal to ours, a signer certificate with a critical
/// extendedKeyUsage of timeStamping.
pub fn check_response(response: &[u8], request: &Request) -> Result<Token, TraceError> {
    let (resp, rest) = der::expect(response, tag::SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError("trailing bytes").into());
    }
    let (status_info, rest) = der::expect(resp.body, tag::SEQUENCE)?;
    let (status, after_status) = der::expect(status_info.body, tag::INTEGER)?;
    if status.body != [0] && status.body != [1] {
        let text = der::children(after_status)
            .ok()
            .and_then(|c| c.into_iter().find(|t| t.tag == tag::SEQUENCE))
            .and_then(|s| der::children(s.body).ok())
            .map(|strings| {
                strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s.body).into_owned())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        return Err(bad(format!(
            "the TSA refused the request (status {}{}{})",
            status.body.first().copied().unwrap_or(0),
            if text.is_empty() { "" } else { ": " },
            text
        )));
    }
    let (parts, fields) = token_parts(rest)?;
    let imprint = fields
        .get(2)
        .filter(|t| t.tag == tag::SEQUENCE)
        .ok_or(DerError("no message imprint"))?;
    check_imprint(imprint, request)?;
    let gen_time = fields
        .get(4)
        .filter(|t| t.tag == tag::GENERALIZED_TIME)
        .ok_or(DerError("no genTime"))?;
    let gen_time_ms = parse_generalized_time(gen_time.body)?;
    let nonce = fields.iter().skip(5).find(|t| t.tag == tag::INTEGER);
    match nonce {
        Some(nonce) if nonce.body == request.nonce.as_slice() => {}
        Some(_) => {
            return Err(bad(
                "the token's nonce is not the one we sent (replayed answer?)",
            ));
        }
        None => return Err(bad("the token has no nonce although we sent one")),
    }
    let certificates: Vec<Vec<u8>> = parts
        .iter()
        .find(|t| t.tag == tag::CONTEXT_0)
        .map(|certs| der::children(certs.body))
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(|c| c.raw.to_vec())
        .collect();
    let signer_infos = parts
        .last()
        .filter(|t| t.tag == tag::SET)
        .ok_or(DerError("no signer infos"))?;
    let signers = der::children(signer_infos.body)?;
    let [signer] = signers.as_slice() else {
        return Err(bad("the token must have exactly one signer"));
    };
    let sid = der::children(signer.body)?
        .get(1)
        .copied()
        .ok_or(DerError("no signer id"))?;
    let signer_cert = certificates
        .iter()
        .map(|c| Certificate::parse(c))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|c| c.is_signer(&sid))
        .ok_or_else(|| {
            bad("the token does not carry the TSA's certificate (we ask for it with certReq)")
        })?;
    if !signer_cert.has_critical_time_stamping_eku()? {
        return Err(bad(
            "the TSA's certificate is not for time-stamping (it needs a critical extendedKeyUsage timeStamping)",
        ));
    }
    Ok(Token {
        gen_time_ms,
        tsa_name: signer_cert.display_name(),
        certificates,
    })
}

/// The SignedData's fields and the TSTInfo's fields of a token (a ContentInfo and what follows).
fn token_parts(input: &[u8]) -> Result<(Vec<Tlv<'_>>, Vec<Tlv<'_>>), TraceError> {
    let (content_info, _) = der::expect(input, tag::SEQUENCE)
        .map_err(|_| bad("the TSA granted the request but sent no token"))?;
    let (content_type, rest) = der::expect(content_info.body, tag::OID)?;
    if content_type.body != OID_SIGNED_DATA {
        return Err(bad("the token is not CMS SignedData"));
    }
    let (explicit, _) = der::expect(rest, tag::CONTEXT_0)?;
    let (signed_data, _) = der::expect(explicit.body, tag::SEQUENCE)?;
    let parts = der::children(signed_data.body)?;
    let encap = parts
        .get(2)
        .filter(|t| t.tag == tag::SEQUENCE)
        .ok_or(DerError("no encapsulated content"))?;
    let (e_type, rest) = der::expect(encap.body, tag::OID)?;
    if e_type.body != OID_TST_INFO {
        return Err(bad("the token does not hold a TSTInfo"));
    }
    let (e_explicit, _) = der::expect(rest, tag::CONTEXT_0)?;
    let (tst_octets, _) = der::expect(e_explicit.body, tag::OCTET_STRING)?;
    let (tst_info, _) = der::expect(tst_octets.body, tag::SEQUENCE)?;
    let fields = der::children(tst_info.body)?;
    Ok((parts, fields))
}

/// Checks that a stored TimeStampResp's imprint is `digest` under `alg`.
pub fn check_stored_imprint(
    response: &[u8],
    alg: HashAlg,
    digest: &[u8],
) -> Result<(), TraceError> {
    let (resp, _) = der::expect(response, tag::SEQUENCE)?;
    let (_, rest) = der::expect(resp.body, tag::SEQUENCE)?;
    let (_, fields) = token_parts(rest)?;
    let imprint = fields
        .get(2)
        .filter(|t| t.tag == tag::SEQUENCE)
        .ok_or(DerError("no message imprint"))?;
    let expected = Request {
        der: Vec::new(),
        alg,
        digest: digest.to_vec(),
        nonce: Vec::new(),
    };
    check_imprint(imprint, &expected)
}

fn check_imprint(imprint: &Tlv<'_>, request: &Request) -> Result<(), TraceError> {
    let (algorithm, rest) = der::expect(imprint.body, tag::SEQUENCE)?;
    let (oid, _) = der::expect(algorithm.body, tag::OID)?;
    let (digest, _) = der::expect(rest, tag::OCTET_STRING)?;
    if oid.body != request.alg.oid() {
        return Err(bad(format!(
            "the token's hash algorithm is not {} as requested",
            request.alg.name()
        )));
    }
    if digest.body != request.digest.as_slice() {
        return Err(bad(
            "the token's message imprint does not match the hash of our export",
        ));
    }
    Ok(())
}

/// Reads `YYYYMMDDHHMMSS[.f+]Z` into ms since the epoch.
fn parse_generalized_time(body: &[u8]) -> Result<i64, TraceError> {
    let text = std::str::from_utf8(body).map_err(|_| DerError("genTime is not ASCII"))?;
    let invalid = || {
        bad(format!(
            "the token's genTime {text:?} is not a valid UTC time"
        ))
    };
    let text_z = text.strip_suffix('Z').ok_or_else(invalid)?;
    let (whole, fraction) = text_z.split_once('.').unwrap_or((text_z, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let num = |range: std::ops::Range<usize>| whole[range].parse::<u16>().map_err(|_| invalid());
    let month = time::Month::try_from(u8::try_from(num(4..6)?).map_err(|_| invalid())?)
        .map_err(|_| invalid())?;
    let date = time::Date::from_calendar_date(
        i32::from(num(0..4)?),
        month,
        u8::try_from(num(6..8)?).map_err(|_| invalid())?,
    )
    .map_err(|_| invalid())?;
    let millis: u16 = format!("{fraction:0<3}")[..3]
        .parse()
        .map_err(|_| invalid())?;
    let time_of_day = time::Time::from_hms_milli(
        u8::try_from(num(8..10)?).map_err(|_| invalid())?,
        u8::try_from(num(10..12)?).map_err(|_| invalid())?,
        u8::try_from(num(12..14)?).map_err(|_| invalid())?,
        millis,
    )
    .map_err(|_| invalid())?;
    let at = time::PrimitiveDateTime::new(date, time_of_day).assume_utc();
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid())
}

/// The parts of an X.509 certificate we look at.
struct Certificate<'a> {
    serial: &'a [u8],
    issuer: &'a [u8],
    subject: Tlv<'a>,
    extensions: Vec<Tlv<'a>>,
}

impl<'a> Certificate<'a> {
    fn parse(der_bytes: &'a [u8]) -> Result<Self, DerError> {
        let (cert, _) = der::expect(der_bytes, tag::SEQUENCE)?;
        let (tbs, _) = der::expect(cert.body, tag::SEQUENCE)?;
        let mut fields = der::children(tbs.body)?;
        if fields.first().is_some_and(|f| f.tag == tag::CONTEXT_0) {
            fields.remove(0);
        }
        let get = |i: usize| fields.get(i).copied().ok_or(DerError("short certificate"));
        let extensions = match fields.iter().find(|f| f.tag == 0xA3) {
            Some(wrapper) => {
                let (list, _) = der::expect(wrapper.body, tag::SEQUENCE)?;
                der::children(list.body)?
            }
            None => Vec::new(),
        };
        Ok(Certificate {
            serial: get(0)?.body,
            issuer: get(2)?.raw,
            subject: get(4)?,
            extensions,
        })
    }

    fn extension(&self, oid: &[u8]) -> Result<Option<(bool, &'a [u8])>, DerError> {
        for extension in &self.extensions {
            let parts = der::children(extension.body)?;
            if parts.first().is_some_and(|p| p.body == oid) {
                let critical = parts
                    .get(1)
                    .is_some_and(|p| p.tag == tag::BOOLEAN && p.body != [0]);
                let value = parts
                    .last()
                    .filter(|p| p.tag == tag::OCTET_STRING)
                    .ok_or(DerError("extension without value"))?;
                return Ok(Some((critical, value.body)));
            }
        }
        Ok(None)
    }

    /// Whether the SignerInfo's `sid` names this certificate.
    fn is_signer(&self, sid: &Tlv<'_>) -> bool {
        match sid.tag {
            tag::SEQUENCE => der::children(sid.body).is_ok_and(|parts| {
                parts.len() == 2 && parts[0].raw == self.issuer && parts[1].body == self.serial
            }),
            0x80 => matches!(
                self.extension(OID_SKI),
                Ok(Some((_, value))) if der::expect(value, tag::OCTET_STRING)
                    .is_ok_and(|(ski, _)| ski.body == sid.body)
            ),
            _ => false,
        }
    }

    fn has_critical_time_stamping_eku(&self) -> Result<bool, DerError> {
        let Some((critical, value)) = self.extension(OID_EKU)? else {
            return Ok(false);
        };
        let (list, _) = der::expect(value, tag::SEQUENCE)?;
        let purposes = der::children(list.body)?;
        Ok(critical && purposes.iter().any(|p| p.body == OID_TIME_STAMPING))
    }

    fn display_name(&self) -> String {
        let mut common = None;
        let mut organisation = None;
        for rdn in der::children(self.subject.body).unwrap_or_default() {
            for attribute in der::children(rdn.body).unwrap_or_default() {
                let parts = der::children(attribute.body).unwrap_or_default();
                if let [oid, value] = parts.as_slice() {
                    let text = String::from_utf8_lossy(value.body).into_owned();
                    if oid.body == OID_CN {
                        common = Some(text);
                    } else if oid.body == OID_O {
                        organisation = Some(text);
                    }
                }
            }
        }
        common
            .or(organisation)
            .unwrap_or_else(|| "unnamed TSA".to_owned())
    }
}

/// PEM of DER certificates.
pub fn to_pem(certificates: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for cert in certificates {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert);
        for line in encoded.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Runs `openssl ts -verify -data <data> -in <response> -CAfile <roots> [-untrusted <chain>]`
/// on files in `dir`: checks the CMS signature, the ESS certificate binding, the signer's
/// purpose and the path to `roots`. No shell; fixed arguments; killed after a timeout.
pub async fn openssl_ts_verify(
    dir: &Path,
    data: &[u8],
    response: &[u8],
    roots: &Path,
    chain_pem: Option<&str>,
) -> Result<(), TraceError> {
    let io = |what: &str, error: std::io::Error| {
        TraceError::Internal(format!("{what} in {}: {error}", dir.display()))
    };
    let data_path = dir.join("export.json");
    let response_path = dir.join("token.tsr");
    std::fs::write(&data_path, data).map_err(|e| io("writing export.json", e))?;
    std::fs::write(&response_path, response).map_err(|e| io("writing token.tsr", e))?;
    let mut command = tokio::process::Command::new("openssl");
    command
        .arg("ts")
        .arg("-verify")
        .arg("-data")
        .arg(&data_path)
        .arg("-in")
        .arg(&response_path)
        .arg("-CAfile")
        .arg(roots);
    if let Some(chain) = chain_pem.filter(|c| !c.is_empty()) {
        let chain_path = dir.join("chain.pem");
        std::fs::write(&chain_path, chain).map_err(|e| io("writing chain.pem", e))?;
        command.arg("-untrusted").arg(chain_path);
    }
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(OPENSSL_TIMEOUT, command.output())
        .await
        .map_err(|_| TraceError::Internal("openssl ts -verify timed out".into()))?
        .map_err(|error| TraceError::Internal(format!("running openssl: {error}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.contains("Verification: OK") {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Using configuration"))
        .map(|l| l.rsplit(':').next().unwrap_or(l).trim().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    Err(bad(format!(
        "the token's signature or certificate chain does not verify against the trusted TSA roots ({reason})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_time_with_and_without_fractions() {
        assert_eq!(
            parse_generalized_time(b"20261129130000Z").unwrap(),
            1_795_957_200_000
        );
        assert_eq!(
            parse_generalized_time(b"20261129130000.5Z").unwrap(),
            1_795_957_200_500
        );
        assert!(parse_generalized_time(b"20261329130000Z").is_err());
        assert!(parse_generalized_time(b"2026112913000Z").is_err());
    }

    #[test]
    fn request_nonce_is_positive_and_minimal() {
        let req = request(HashAlg::Sha256, &[0; 32], [0xFF; 8]);
        assert_eq!(req.nonce[0], 0x7F);
        let req = request(HashAlg::Sha256, &[0; 32], [0; 8]);
        assert_eq!(req.nonce[0], 0x40);
        assert_eq!(req.der[0], tag::SEQUENCE);
    }

    #[test]
    fn garbage_is_a_bad_answer() {
        let req = request(HashAlg::Sha256, &[0; 32], [1; 8]);
        assert!(matches!(
            check_response(b"<html>oops</html>", &req),
            Err(TraceError::BadAnswer(_))
        ));
    }
}
