//! Hugging Face safetensors (one file or several shards), read with the `safetensors` crate.
//! Tensors are converted to f32 on load: F32, F16, BF16 and F64 are accepted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};

use super::{FileBytes, HostTensor, WeightSource};
use crate::error::{ModelError, Result};

struct Shard {
    path: PathBuf,
    bytes: FileBytes,
    /// Offset of the data section (8-byte length + JSON header).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

/// The tensors of one or more safetensors files, seen as one checkpoint.
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// `files`: (path for messages, bytes). `origin` names the checkpoint as a whole.
    pub fn new(origin: PathBuf, files: Vec<(PathBuf, FileBytes)>) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (path, bytes) in files {
            let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| {
                ModelError::format(&path, format!("not a valid safetensors file ({e}); the download may be truncated"))
            })?;
            let data_start = 8 + header_len;
            let tensors: HashMap<String, TensorInfo> =
                metadata.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
            for (name, info) in &tensors {
                if data_start + info.data_offsets.1 > bytes.len() {
                    return Err(ModelError::format(
                        &path,
                        format!("tensor `{name}` extends past the end of the file; the file is truncated"),
                    ));
                }
                if index.insert(name.clone(), shards.len()).is_some() {
                    return Err(ModelError::format(&path, format!("tensor `{name}` appears in two shards")));
                }
            }
            shards.push(Shard { path, bytes, data_start, tensors });
        }
        Ok(Self { origin, shards, index })
    }
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let shard = &self.shards[*self.index.get(name)?];
        Some(shard.tensors[name].shape.clone())
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let shard = self.index.get(name).map(|&i| &self.shards[i]).ok_or_else(|| ModelError::MissingTensor {
            path: self.origin.clone(),
            name: name.to_string(),
            hint: "the checkpoint does not have it".into(),
        })?;
        let info = &shard.tensors[name];
        let bytes = &shard.bytes[shard.data_start + info.data_offsets.0..shard.data_start + info.data_offsets.1];
        let data = to_f32(info.dtype, bytes)
            .map_err(|msg| ModelError::format(&shard.path, format!("tensor `{name}`: {msg}")))?;
        Ok(HostTensor::new(info.shape.clone(), data))
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let words = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => words(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::F16 => words(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => words(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F64 => words(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        other => return Err(format!("dtype {other:?} is not supported (expected F32, F16, BF16 or F64)")),
    })
}

/// Serializes f32 tensors to safetensors bytes (names sorted, as the crate requires).
pub fn serialize_f32(tensors: &BTreeMap<String, HostTensor>, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    struct F32View<'a>(&'a HostTensor);
    impl safetensors::View for F32View<'_> {
        fn dtype(&self) -> Dtype {
            Dtype::F32
        }
        fn shape(&self) -> &[usize] {
            &self.0.shape
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Owned(self.0.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        fn data_len(&self) -> usize {
            self.0.data.len() * 4
        }
    }
    safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), F32View(v))), Some(metadata))
        .map_err(|e| ModelError::Input(format!("cannot serialize safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &[(&str, HostTensor)]) -> FileBytes {
        let map: BTreeMap<String, HostTensor> = tensors.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        FileBytes::Owned(serialize_f32(&map, HashMap::new()).unwrap())
    }

    #[test]
    fn round_trips_and_merges_shards() {
        let a = HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = HostTensor::new(vec![1], vec![-0.5]);
        let src = SafetensorsSource::new(
            "ckpt".into(),
            vec![
                ("a.safetensors".into(), file(&[("a", a.clone())])),
                ("b.safetensors".into(), file(&[("b", b.clone())])),
            ],
        )
        .unwrap();
        assert_eq!(src.names(), vec!["a", "b"]);
        assert_eq!(src.shape("a"), Some(vec![2, 3]));
        assert_eq!(src.load("a").unwrap(), a);
        assert_eq!(src.load("b").unwrap(), b);
        let err = src.load("c").unwrap_err().to_string();
        assert!(err.contains("`c` is missing"), "{err}");
    }

    #[test]
    fn truncated_file_is_reported_with_its_path() {
        let FileBytes::Owned(mut bytes) = file(&[("a", HostTensor::new(vec![4], vec![1.; 4]))]) else { unreachable!() };
        bytes.truncate(bytes.len() - 3);
        let err = SafetensorsSource::new("x".into(), vec![("w.safetensors".into(), FileBytes::Owned(bytes))])
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("w.safetensors"), "{err}");
        let err =
            SafetensorsSource::new("x".into(), vec![("junk.safetensors".into(), FileBytes::Owned(b"hello".to_vec()))])
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("not a valid safetensors file"), "{err}");
    }

    #[test]
    fn converts_half_precision() {
        assert_eq!(to_f32(Dtype::F16, &half::f16::from_f32(1.5).to_le_bytes()).unwrap(), vec![1.5]);
        assert_eq!(to_f32(Dtype::BF16, &half::bf16::from_f32(-2.0).to_le_bytes()).unwrap(), vec![-2.0]);
        assert!(to_f32(Dtype::I64, &[0; 8]).is_err());
    }
}
