//! A minimal DER reader and writer: just enough ASN.1 to build a TimeStampReq and to read the
//! fields of a TimeStampResp we check (status, TSTInfo, certificates, signer id). It checks
//! lengths and never reads past its input; the cryptographic verification is OpenSSL's
//! (see [`crate::rfc3161`]).

/// A malformed encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// Universal tags we read or write.
pub mod tag {
    /// BOOLEAN.
    pub const BOOLEAN: u8 = 0x01;
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL.
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// GeneralizedTime.
    pub const GENERALIZED_TIME: u8 = 0x18;
    /// SEQUENCE.
    pub const SEQUENCE: u8 = 0x30;
    /// SET.
    pub const SET: u8 = 0x31;
    /// `[0]` constructed.
    pub const CONTEXT_0: u8 = 0xA0;
}

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The tag byte (high tag numbers are refused).
    pub tag: u8,
    /// The contents.
    pub body: &'a [u8],
    /// The whole encoding, header included.
    pub raw: &'a [u8],
}

/// Reads the first TLV of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("unexpected end"))?;
    if tag & 0x1F == 0x1F {
        return Err(DerError("high tag number"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError("bad length"));
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(DerError("length past the end"));
    }
    let header = input.len() - rest.len();
    let (body, rest) = rest.split_at(len);
    Ok((
        Tlv {
            tag,
            body,
            raw: &input[..header + len],
        },
        rest,
    ))
}

/// Reads a TLV that must carry `expected`.
pub fn expect(input: &[u8], expected: u8) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != expected {
        return Err(DerError("unexpected tag"));
    }
    Ok((tlv, rest))
}

/// The TLVs inside a constructed value.
pub fn children(body: &[u8]) -> Result<Vec<Tlv<'_>>, DerError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (tlv, after) = read(rest)?;
        out.push(tlv);
        rest = after;
    }
    Ok(out)
}

/// Encodes a TLV.
pub fn write(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let body = vec![7u8; 300];
        let encoded = write(tag::OCTET_STRING, &body);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let (tlv, rest) = read(&encoded).unwrap();
        assert_eq!(tlv.body, &body[..]);
        assert!(rest.is_empty());
    }

    #[test]
    fn truncated_input_is_refused() {
        assert!(read(&[0x30, 0x05, 0x01]).is_err());
        assert!(read(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(read(&[]).is_err());
    }
}
