//! A runtime's defaults: what the engine does when no flag is passed (a runtime profile's
//! `defaults:`), applied to the deployment keys a spec leaves out. A spec that says nothing about
//! `text_encoder` is estimated as the engine runs it.

use serde::{Deserialize, Serialize};

use crate::deployment::TextEncoderPlacement;

/// `defaults:` of a runtime profile.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeDefaults {
    /// The text encoder's placement when the spec sets none (`resident`, `offload`, `drop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder: Option<String>,
    /// Where this is shown: the engine's file (and commit).
    pub source: String,
}

impl RuntimeDefaults {
    /// The default placement of the text encoder, if the runtime has one.
    pub fn text_encoder(&self) -> Option<TextEncoderPlacement> {
        let name = self.text_encoder.as_deref()?;
        TextEncoderPlacement::ALL
            .into_iter()
            .find(|t| t.name() == name)
    }

    /// What is wrong with the table (an unknown value, a missing source).
    pub fn problems(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = &self.text_encoder
            && self.text_encoder().is_none()
        {
            out.push(format!(
                "{}defaults.text_encoder: unknown placement '{}' (expected resident, offload, drop)",
                at("text_encoder"),
                crate::message::echo(t, 32)
            ));
        }
        if self.source.trim().is_empty() || self.source.chars().count() > 600 {
            out.push(format!(
                "{}defaults.source: say where the engine shows it (1 to 600 characters)",
                at("source")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sglang_offloads_the_text_encoder_by_default() {
        let rt = crate::catalog::Catalog::get().runtime("sglang").unwrap();
        let d = rt.defaults.as_ref().expect("sglang has defaults");
        assert_eq!(d.text_encoder(), Some(TextEncoderPlacement::Offload));
        assert!(rt.text_encoder_streams_layers);
        assert!(d.problems(&|_| String::new()).is_empty());
    }

    #[test]
    fn an_unknown_default_is_a_problem() {
        let d = RuntimeDefaults {
            text_encoder: Some("elsewhere".into()),
            source: "x".into(),
        };
        assert_eq!(d.problems(&|_| String::new()).len(), 1);
    }
}
