//! What Capabilities reports: the models, encodings and gNMI version.

use crate::proto::gnmi::{CapabilityResponse, Encoding, ModelData};

/// The gNMI version this server implements: the value of the `gnmi_service`
/// file option in `proto/gnmi/gnmi.proto` (a test checks they agree).
pub const GNMI_VERSION: &str = "0.10.0";

/// The `organization` statement of every OpenConfig module.
pub const OPENCONFIG_ORGANIZATION: &str = "OpenConfig working group";

/// An OpenConfig YANG module this server is meant to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// YANG module name.
    pub name: &'static str,
    /// The module's `oc-ext:openconfig-version` (semantic version).
    pub version: &'static str,
    /// The YANG `revision` date that goes with `version`.
    pub revision: &'static str,
}

/// The OpenConfig modules advertised by Capabilities.
///
/// Each `version` is the module's `oc-ext:openconfig-version` and `revision`
/// the matching YANG `revision` date, both read from copies of the module
/// text (openconfig/public `release/models/...`).
///
/// The nodes served (see `schema.rs`) have the same names, keys and types
/// in these releases and in the newer ones. BGP (openconfig-bgp) and the
/// forwarding table (openconfig-aft) are served inside
/// openconfig-network-instance, whose namespace their nodes take;
/// openconfig-aft is listed for the AFT structure those nodes follow, and
/// openconfig-rib-bgp (0.9.0, read from openconfig/public) for the BGP
/// `rib` (Loc-RIB, attribute sets) the same way.
/// `/routing-policy` is openconfig-routing-policy, its
/// `bgp-defined-sets` and BGP conditions and actions
/// openconfig-bgp-policy (6.2.0, read from openconfig/public).
///
/// Only openconfig-interfaces is known to be the latest release. For the
/// others, newer revisions exist than the newest copy that could be read
/// when this list was written (openconfig-if-ip 2025-05-12,
/// openconfig-network-instance 2025-03-26, openconfig-routing-policy
/// 2024-11-26, openconfig-system 2024-09-24, openconfig-aft 2025-03-12):
/// refresh these from openconfig/public, and keep them equal to the schema
/// the path code actually follows.
pub const SUPPORTED_MODELS: &[Model] = &[
    Model {
        name: "openconfig-interfaces",
        version: "3.8.1",
        revision: "2026-01-06",
    },
    Model {
        name: "openconfig-if-ip",
        version: "2.0.0",
        revision: "2017-07-14",
    },
    Model {
        name: "openconfig-network-instance",
        version: "2.0.0",
        revision: "2022-11-18",
    },
    Model {
        name: "openconfig-routing-policy",
        version: "3.4.3",
        revision: "2023-11-09",
    },
    Model {
        name: "openconfig-bgp-policy",
        version: "6.2.0",
        revision: "2023-08-03",
    },
    Model {
        name: "openconfig-system",
        version: "0.17.1",
        revision: "2023-06-16",
    },
    Model {
        name: "openconfig-aft",
        version: "1.0.0",
        revision: "2022-03-29",
    },
    Model {
        name: "openconfig-rib-bgp",
        version: "0.9.0",
        revision: "2022-11-21",
    },
];

/// Encodings advertised by Capabilities.
pub const SUPPORTED_ENCODINGS: &[Encoding] = &[Encoding::Json, Encoding::JsonIetf];

/// The Capabilities answer: [`SUPPORTED_MODELS`], [`SUPPORTED_ENCODINGS`]
/// and [`GNMI_VERSION`].
pub fn capability_response() -> CapabilityResponse {
    CapabilityResponse {
        supported_models: SUPPORTED_MODELS
            .iter()
            .map(|m| ModelData {
                name: m.name.to_owned(),
                organization: OPENCONFIG_ORGANIZATION.to_owned(),
                version: m.version.to_owned(),
            })
            .collect(),
        supported_encodings: SUPPORTED_ENCODINGS.iter().map(|e| *e as i32).collect(),
        g_nmi_version: GNMI_VERSION.to_owned(),
        extension: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constant must be the `gnmi_service` option of the proto we
    /// compiled, so the two cannot drift apart.
    #[test]
    fn gnmi_version_matches_the_proto_file_option() {
        let proto = include_str!("../proto/gnmi/gnmi.proto");
        let option = format!("option (gnmi_service) = \"{GNMI_VERSION}\";");
        assert!(proto.contains(&option), "gnmi.proto lacks `{option}`");
    }

    #[test]
    fn models_are_distinct_and_versioned() {
        let mut names: Vec<_> = SUPPORTED_MODELS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SUPPORTED_MODELS.len());
        for m in SUPPORTED_MODELS {
            let parts: Vec<_> = m.version.split('.').collect();
            assert_eq!(parts.len(), 3, "{}: {}", m.name, m.version);
            assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
            assert_eq!(m.revision.len(), 10, "{}: {}", m.name, m.revision);
        }
    }
}
