//! The Hub files transfer-lab's weights come from, pinned. Each revision, digest and
//! size was read from a public source that pins it (named beside it); a digest no source
//! gave is `None`, and the download is then checked against the Hub's `X-Linked-Etag`
//! instead. Never fill one in from memory. Revisions of DINOv2 and CLIP: MTEB's model
//! registry (embeddings-benchmark/mteb `mteb/models/dino_models.py`, `clip_models.py`).
use super::HubFile;

const DINOV2_LICENSE: &str = "apache-2.0";
/// OpenAI's CLIP model cards carry no license tag (MTEB records `license=None`); the
/// code of openai/CLIP is MIT.
const CLIP_LICENSE: &str = "none tagged on the model card (openai/CLIP code: MIT)";

const fn safetensors(
    repo: &'static str,
    revision: &'static str,
    sha256: Option<&'static str>,
    size_bytes: Option<u64>,
    license: &'static str,
) -> HubFile {
    HubFile { repo, revision, file: "model.safetensors", sha256, size_bytes, license }
}

/// SHA-256 and size: two independent public pins of this revision's `model.safetensors`
/// (a DINOv2 artifact check and a deployment record, found by GitHub code search).
pub const DINOV2_SMALL: HubFile = safetensors(
    "facebook/dinov2-small",
    "ed25f3a31f01632728cabb09d1542f84ab7b0056",
    Some("ae1e99fcefd534ed978cdeb8326f08030c96e28b7a81ffcbc98a857c84d14be1"),
    Some(88_249_960),
    DINOV2_LICENSE,
);

pub const DINOV2_BASE: HubFile =
    safetensors("facebook/dinov2-base", "f9e44c814b77203eaa57a6bdbbd535f21ede1415", None, None, DINOV2_LICENSE);

pub const DINOV2_LARGE: HubFile =
    safetensors("facebook/dinov2-large", "47b73eefe95e8d44ec3623f8890bd894b6ea2d6c", None, None, DINOV2_LICENSE);

/// Revision: a Hub cache snapshot path pinned in public research code (not MTEB).
pub const DINOV2_WITH_REGISTERS_LARGE: HubFile = safetensors(
    "facebook/dinov2-with-registers-large",
    "e4c89a4e05589de9b3e188688a303d0f3c04d0f3",
    None,
    None,
    DINOV2_LICENSE,
);

pub const CLIP_VIT_BASE_PATCH16: HubFile =
    safetensors("openai/clip-vit-base-patch16", "57c216476eefef5ab752ec549e440a49ae4ae5f3", None, None, CLIP_LICENSE);

pub const CLIP_VIT_LARGE_PATCH14: HubFile =
    safetensors("openai/clip-vit-large-patch14", "32bd64288804d66eefd0ccbe215aa642df71cc41", None, None, CLIP_LICENSE);

/// Every pinned file (dinov2-with-registers-small and -base have no commit pinned yet).
pub const KNOWN: [&HubFile; 6] = [
    &DINOV2_SMALL,
    &DINOV2_BASE,
    &DINOV2_LARGE,
    &DINOV2_WITH_REGISTERS_LARGE,
    &CLIP_VIT_BASE_PATCH16,
    &CLIP_VIT_LARGE_PATCH14,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_file_is_pinned_to_a_commit() {
        for f in KNOWN {
            super::super::check_pinned(f).unwrap();
            assert_eq!(f.file, "model.safetensors");
        }
        assert_eq!(
            DINOV2_SMALL.url("https://huggingface.co/"),
            "https://huggingface.co/facebook/dinov2-small/resolve/ed25f3a31f01632728cabb09d1542f84ab7b0056/\
             model.safetensors"
        );
        assert_eq!(
            DINOV2_SMALL.license_line(),
            "facebook/dinov2-small model.safetensors: license apache-2.0, https://huggingface.co/facebook/dinov2-small"
        );
    }
}
