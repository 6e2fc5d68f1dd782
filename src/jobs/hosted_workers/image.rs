//! A hosted worker's container image: its reference split into repository
//! and tag, and the image variants.
//!
//! Tendril's release publishes the all-clouds image as `<version>` and one
//! image per cloud provider as `<version>-aws`, `<version>-gcp` and
//! `<version>-azure` (each carries only its cloud's CLIs, so a cold start
//! pulls less). A worker serves one cloud identity, so DEPLOY_WORKER can
//! deploy the variant of that identity's provider, and UPDATE_WORKER keeps
//! the variant a worker runs: `1.4.0-aws` becomes `1.5.0-aws`.

use crate::settings::ImageVariants;
use crate::trellis::Provider;

/// The repository Tendril's own releases are published to (the worker
/// template's default), the one that has the variants.
pub const TENDRIL_REPOSITORY: &str = "ghcr.io/bobikenobi12/tendril";

/// The original Go worker's repository (Trellis's Update button's fallback),
/// which has no Tendril release.
pub const GO_WORKER_REPOSITORY: &str = "ghcr.io/bobikenobi12/grape-worker";

/// The variant suffixes, one per cloud provider.
const VARIANTS: [&str; 3] = ["aws", "gcp", "azure"];

/// An image reference, `repository[:tag][@digest]`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    /// The tag, empty when the reference has none.
    pub tag: String,
}

impl ImageRef {
    /// Splits `reference`; a registry's port (`localhost:5000/tendril`) is
    /// not taken for a tag, and a digest is dropped.
    pub fn parse(reference: &str) -> ImageRef {
        let without_digest = reference.split('@').next().unwrap_or_default();
        let name_start = without_digest.rfind('/').map_or(0, |slash| slash + 1);
        match without_digest[name_start..].find(':') {
            Some(colon) => ImageRef {
                repository: without_digest[..name_start + colon].to_string(),
                tag: without_digest[name_start + colon + 1..].to_string(),
            },
            None => ImageRef {
                repository: without_digest.to_string(),
                tag: String::new(),
            },
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tag.as_str() {
            "" => f.write_str(&self.repository),
            tag => write!(f, "{}:{tag}", self.repository),
        }
    }
}

/// The variant a tag names (`1.4.0-aws` is aws), if any.
pub fn variant_of(tag: &str) -> Option<&'static str> {
    VARIANTS
        .into_iter()
        .find(|variant| tag.len() > variant.len() + 1 && tag.ends_with(&format!("-{variant}")))
}

/// `tag` as the given variant's tag, unless it names a variant already.
pub fn with_variant(tag: &str, variant: Option<&str>) -> String {
    match variant {
        Some(variant) if variant_of(tag).is_none() => format!("{tag}-{variant}"),
        _ => tag.to_string(),
    }
}

/// The variant DEPLOY_WORKER deploys for a worker of `repository` that
/// serves an identity of `provider` (none: the all-clouds image).
pub fn variant_to_deploy(
    setting: ImageVariants,
    repository: &str,
    provider: Option<&Provider>,
) -> Option<&'static str> {
    let wanted = match setting {
        ImageVariants::On => true,
        ImageVariants::Off => false,
        ImageVariants::Auto => repository == TENDRIL_REPOSITORY,
    };
    let name = provider?.as_str();
    VARIANTS
        .into_iter()
        .find(|variant| *variant == name)
        .filter(|_| wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_splits_into_repository_and_tag() {
        let split = |reference| {
            let image = ImageRef::parse(reference);
            (image.repository, image.tag)
        };
        assert_eq!(
            split("ghcr.io/acme/tendril:1.0.0"),
            ("ghcr.io/acme/tendril".into(), "1.0.0".into())
        );
        assert_eq!(
            split("localhost:5000/tendril"),
            ("localhost:5000/tendril".into(), String::new())
        );
        assert_eq!(
            split("localhost:5000/tendril:2-aws"),
            ("localhost:5000/tendril".into(), "2-aws".into())
        );
        assert_eq!(
            split("ghcr.io/acme/tendril:3@sha256:ab"),
            ("ghcr.io/acme/tendril".into(), "3".into())
        );
        assert_eq!(
            ImageRef::parse("ghcr.io/acme/tendril@sha256:ab").to_string(),
            "ghcr.io/acme/tendril"
        );
    }

    #[test]
    fn a_variant_is_a_provider_suffix_of_the_tag() {
        assert_eq!(variant_of("1.4.0-aws"), Some("aws"));
        assert_eq!(variant_of("1.4.0-rc.1-azure"), Some("azure"));
        assert_eq!(variant_of("1.4.0"), None);
        assert_eq!(variant_of("1.4.0-rc.1"), None);
        assert_eq!(variant_of("-aws"), None, "a suffix alone is no variant");
        assert_eq!(with_variant("1.5.0", Some("gcp")), "1.5.0-gcp");
        assert_eq!(with_variant("1.5.0-gcp", Some("aws")), "1.5.0-gcp");
        assert_eq!(with_variant("1.5.0", None), "1.5.0");
    }

    #[test]
    fn the_variant_deployed_follows_the_setting_and_the_identity() {
        let aws = Provider::Aws;
        let other = Provider::Other("oracle".into());
        let mine = "ghcr.io/acme/tendril";
        assert_eq!(
            variant_to_deploy(ImageVariants::Auto, TENDRIL_REPOSITORY, Some(&aws)),
            Some("aws")
        );
        assert_eq!(
            variant_to_deploy(ImageVariants::Auto, mine, Some(&aws)),
            None
        );
        assert_eq!(
            variant_to_deploy(ImageVariants::On, mine, Some(&aws)),
            Some("aws")
        );
        assert_eq!(
            variant_to_deploy(ImageVariants::Off, TENDRIL_REPOSITORY, Some(&aws)),
            None
        );
        assert_eq!(
            variant_to_deploy(ImageVariants::On, mine, None),
            None,
            "no identity: the all-clouds image"
        );
        assert_eq!(
            variant_to_deploy(ImageVariants::On, mine, Some(&other)),
            None
        );
    }
}
