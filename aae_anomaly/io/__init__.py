"""Files in and out: model files (:mod:`.modelfile`), tables (:mod:`.tables`) and the
atomic writes both use (:mod:`.atomic`)."""
