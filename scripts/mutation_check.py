#!/usr/bin/env python3
"""Mutation check of the log's durability guarantees (run off CI: ~3 min a mutant).

Each mutant deletes, or makes false, the one line that provides a guarantee
(docs/durability.md, "Which test kills which mutation"); the check applies
it in a throw-away worktree of HEAD, runs `cargo test -p logbook-wal`, and
prints which tests failed. A mutant no test kills is a guarantee no test
proves. Usage: scripts/mutation_check.py [INDEX ...]
"""
import os, re, subprocess, sys, tempfile

MUTANTS = [
 ("batch fdatasync", "crates/wal/src/commit/disk.rs",
  "        debug_assert_eq!(lsn, end);\n        if sync {\n            if let Err(e) = out.sync(io) {",
  "        debug_assert_eq!(lsn, end);\n        if sync {\n            if let Err(e) = Ok::<(), WalError>(()) {"),
 ("seal fdatasync before a roll", "crates/wal/src/commit/disk.rs",
  "        if !io.sealed {\n            out.sync(io)?;\n            out.durable_end = Some(lsn);",
  "        if !io.sealed {\n            out.durable_end = Some(lsn);"),
 ("directory fsync after creating a segment", "crates/wal/src/segment.rs",
  "        fs.sync_dir(dir)\n            .map_err(|e| WalError::fatal(\"fsync directory\", dir, e))\n    })();",
  "        Ok(())\n    })();"),
 ("directory fsync at reopen", "crates/wal/src/wal.rs",
  "        fs.sync_dir(&dir)\n            .map_err(|e| WalError::fatal(\"fsync directory\", &dir, e))?;\n        sync_parent(&*fs, &dir)?;",
  "        sync_parent(&*fs, &dir)?;"),
 ("parent fsync when creating the log directory", "crates/wal/src/wal.rs",
  "            fs.sync_dir(parent)\n                .map_err(|e| WalError::fatal(\"fsync directory\", parent, e))?;\n        }\n    }\n    Ok(())",
  "            let _ = parent;\n        }\n    }\n    Ok(())"),
 ("poison on a failed fsync whatever the errno", "crates/wal/src/commit/disk.rs",
  "synced.map_err(|e| WalError::fatal(\"fsync\", &io.entry.path, e))?;",
  "synced.map_err(|e| WalError::io(\"fsync\", &io.entry.path, e))?;"),
 ("Batch/Never keep queued records through a full disk", "crates/wal/src/commit.rs",
  "Some(error) if error.is_disk_full() && self.opts.sync != SyncPolicy::Always => {",
  "Some(error) if false && error.is_disk_full() => {"),
 ("reader bounded by the durable watermark", "crates/wal/src/reader.rs",
  "if is_tail && !self.unbounded && lsn >= self.vouched {",
  "if false {"),
 ("reader re-reads before judging damage", "crates/wal/src/reader.rs",
  "if self.confirmed != Some((cur.offset, lsn)) {",
  "if false {"),
 ("recovery cuts a poisoned writer's unsynced tail", "crates/wal/src/recovery.rs",
  "Step::Record { .. } if poisoned && expected >= durable_end => {",
  "Step::Record { .. } if false => {"),
 ("a poisoned writer cuts its unsynced tail off the file", "crates/wal/src/commit/disk.rs",
  "            if let Err(e) = io.file.set_len(io.synced_pos) {",
  "            if let Err(e) = Ok::<(), std::io::Error>(()) {"),
 ("a failed recovery fsync cuts the unvouched tail (same boot)", "crates/wal/src/wal.rs",
  "        if same_boot {", "        if false && same_boot {"),
 ("a failed recovery fsync cuts nothing in another boot", "crates/wal/src/wal.rs",
  "if w.boot_id == boot_id || w.boot_id == unknown || boot_id == unknown);", "if true);"),
 ("an unknown boot id in the watermark counts as possibly this boot", "crates/wal/src/wal.rs",
  "if w.boot_id == boot_id || w.boot_id == unknown || boot_id == unknown);",
  "if w.boot_id == boot_id || boot_id == unknown);"),
 ("an unknown boot id now counts as possibly this boot", "crates/wal/src/wal.rs",
  "if w.boot_id == boot_id || w.boot_id == unknown || boot_id == unknown);",
  "if w.boot_id == boot_id || w.boot_id == unknown);"),
 ("readers never fsync (a reader's fsync of the tail put back)", "crates/wal/src/reader.rs",
  "            cur.invalidate();\n            return Ok(true);\n        }\n        Ok(false)\n    }",
  "            cur.invalidate();\n            return Ok(true);\n        }\n        let path = cur.entry.path.clone();\n"
  "        match self.fs.open(&path, OpenMode::Read).and_then(|f| f.sync_data()) {\n"
  "            Ok(()) => {\n                self.vouched = lsn + 1;\n"
  "                if let Some(cur) = self.current.as_mut() {\n                    cur.invalidate();\n                }\n"
  "                Ok(true)\n            }\n            Err(_) => Ok(false),\n        }\n    }"),
 ("the liveness probe opens LOCK read-only", "crates/wal/src/fs.rs",
  "        let file = match File::open(path) {",
  "        let file = match OpenOptions::new().read(true).write(true).open(path) {"),
 ("a LOCK that cannot be read means a writer may be live", "crates/wal/src/wal.rs",
  "cannot probe the writer lock: a writer may be live\");\n            Ok(true)",
  "cannot probe the writer lock: a writer may be live\");\n            Ok(false)"),
 ("the durable watch is marked closed only by close", "crates/wal/src/commit.rs",
  "        self.progress.send_modify(|p| {\n            p.durable_end = st.durable_end;\n            p.poisoned = poisoned;\n        });",
  "        self.progress.send_modify(|p| {\n            p.durable_end = st.durable_end;\n            p.poisoned = poisoned;\n            p.closed = st.closed;\n        });"),
 ("recovery refuses damage below the watermark", "crates/wal/src/recovery.rs",
  "                if vouched {\n                    return Err(WalError::DurableDamaged {",
  "                if false {\n                    return Err(WalError::DurableDamaged {"),
 ("watermark made durable at open", "crates/wal/src/commit.rs",
  "        lock.sync()\n            .map_err(|e| WalError::fatal(\"fsync\", &lock_path, e))?;",
  ""),
 ("retention fsyncs the directory after each removal", "crates/wal/src/wal.rs",
  "                    fs.sync_dir(dir)\n                        .map_err(|e| WalError::fatal(\"fsync directory\", dir, e))?;\n                    removed += 1;",
  "                    removed += 1;"),
 ("segment base LSN 0 refused", "crates/wal/src/segment.rs",
  "if base_lsn == 0 || base_lsn > MAX_LSN {", "if false {"),
 ("recovery fsyncs what it keeps", "crates/wal/src/wal.rs",
  "    if let Err(e) = file.sync_data() {", "    if let Err(e) = Ok::<(), std::io::Error>(()) {"),
]


def main():
    repo = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True).stdout.strip()
    only = set(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="logbook-mutants-") as tmp:
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", tree, "HEAD"],
                       check=True, capture_output=True)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        survived = 0
        try:
            for i, (name, path, old, new) in enumerate(MUTANTS):
                if only and str(i) not in only:
                    continue
                p = os.path.join(tree, path)
                src = open(p).read()
                if src.count(old) != 1:
                    print(f"| {name} | pattern not found: update the list |", flush=True)
                    continue
                open(p, "w").write(src.replace(old, new))
                try:
                    r = subprocess.run(["cargo", "test", "-p", "logbook-wal", "--no-fail-fast"],
                                       cwd=tree, env=env, capture_output=True, text=True,
                                       timeout=1200)
                    out = r.stdout + r.stderr
                    if "could not compile" in out:
                        killed = ["(does not compile)"]
                    else:
                        killed = sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)))
                except subprocess.TimeoutExpired:
                    killed = ["(a test hung until the timeout)"]
                finally:
                    open(p, "w").write(src)
                survived += not killed
                print(f"| {name} | {', '.join('`'+k+'`' for k in killed) or '**survived**'} |",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", tree])
    sys.exit(1 if survived else 0)

if __name__ == "__main__":
    main()
