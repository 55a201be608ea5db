//! Plain objects beside the tables: an object store rooted at a folder of
//! the lake, reached with the lake's own storage options, for what the host
//! keeps in the same store without being a table (the plugin registry).

use std::sync::Arc;

use deltalake::DeltaTableBuilder;
use object_store::ObjectStore;

use crate::{Lake, Result, delta_err};

impl Lake {
    /// An object store whose paths are relative to `<root>/<folder>/` (the
    /// lake root itself for `""`). A local folder is created if missing.
    pub fn objects(&self, folder: &str) -> Result<Arc<dyn ObjectStore>> {
        let name = if folder.is_empty() { "(lake)" } else { folder };
        let url = match folder {
            "" => self.root.clone(),
            folder => self.table_url(folder)?,
        };
        let store = DeltaTableBuilder::from_url(url)
            .map_err(delta_err(name))?
            .with_storage_options(self.options.clone())
            .build_storage()
            .map_err(delta_err(name))?;
        Ok(store.object_store(None))
    }
}
