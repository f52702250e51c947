import Foundation

/// The files of a SQLite database hold patients' data: they are the owner's alone.
///
/// Before a connection opens a file database (``SQLiteConfiguration/privateFiles``, on by
/// default):
/// - missing directories on the way to it are created `0700`;
/// - a missing database file is created `0600` (with `O_EXCL`, before SQLite sees it). SQLite
///   gives its `-wal`, `-shm` and `-journal` files the database file's own mode, so they are
///   `0600` too, whatever the process's umask;
/// - an existing database, `-wal`, `-shm` or `-journal` file that any other user may read or
///   write or that another user owns, or a directory holding it that others may write without
///   the sticky bit (they could swap the file), is refused with ``DatabaseError/Code/configuration``, naming the path, its
///   mode and the `chmod` that fixes it. Nothing is changed in that case.
///
/// A directory or file that cannot be made or inspected is ``DatabaseError/Code/connectionFailed``.
/// `:memory:` and `file:` URIs are left to SQLite.
enum SQLiteFiles {
    static func prepare(path: String) throws(DatabaseError) {
        guard !path.isEmpty, path != ":memory:", !path.hasPrefix("file:") else { return }
        let file = URL(fileURLWithPath: path).standardizedFileURL
        let directory = file.deletingLastPathComponent().path
        try makeDirectories(directory)
        guard let directoryMode = try mode(of: directory) else {
            throw .configuration("the SQLite database directory \(directory) could not be created")
        }
        if directoryMode & 0o022 != 0, directoryMode & 0o1000 == 0 {
            throw .configuration(
                "the SQLite database directory \(directory) is writable by other users (mode \(octal(directoryMode))); "
                    + "use a private directory (chmod 700 \(directory))"
            )
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let candidate = file.path + suffix
            if let owner = try owner(of: candidate), owner != geteuid() {
                throw .configuration(
                    "the SQLite database file \(candidate) belongs to another user (uid \(owner)); "
                        + "a file someone else made could be theirs to read or swap: use a file of this user's"
                )
            }
            if let fileMode = try mode(of: candidate), fileMode & 0o077 != 0 {
                throw .configuration(
                    "the SQLite database file \(candidate) is open to other users (mode \(octal(fileMode))); "
                        + "it holds patients' data: chmod 600 \(candidate)"
                )
            }
        }
        let descriptor = open(file.path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            // The umask may have narrowed it further; it may not have widened it, but be exact.
            _ = fchmod(descriptor, 0o600)
            close(descriptor)
        } else if errno != EEXIST {
            throw DatabaseError(code: .connectionFailed, detail: "could not create the SQLite database file \(file.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates `directory` (and missing parents) `0700`, and refuses an existing one that any
    /// other user may enter, read or write: for a directory of the application's own, such as
    /// the embedded default's `.restartix/`, which also holds the local keyring.
    static func preparePrivateDirectory(_ directory: String) throws(DatabaseError) {
        try makeDirectories(directory)
        guard let directoryMode = try mode(of: directory) else {
            throw .configuration("the directory \(directory) could not be created")
        }
        if directoryMode & 0o077 != 0 {
            throw .configuration(
                "the directory \(directory) is open to other users (mode \(octal(directoryMode))); it holds patients' data and keys: chmod 700 \(directory)"
            )
        }
    }

    /// Creates `directory` and any missing parents, each `0700`; existing ones are left as they are.
    private static func makeDirectories(_ directory: String) throws(DatabaseError) {
        var missing: [String] = []
        var current = directory
        while !current.isEmpty, current != "/", try mode(of: current) == nil {
            missing.append(current)
            current = (current as NSString).deletingLastPathComponent
        }
        for path in missing.reversed() where mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw DatabaseError(code: .connectionFailed, detail: "could not create the SQLite database directory \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The permission bits of `path` (with the sticky bit), or `nil` when nothing is there.
    private static func mode(of path: String) throws(DatabaseError) -> mode_t? {
        try status(of: path).map { $0.st_mode & 0o7777 }
    }

    /// The owner of `path`, or `nil` when nothing is there.
    private static func owner(of path: String) throws(DatabaseError) -> uid_t? {
        try status(of: path).map(\.st_uid)
    }

    private static func status(of path: String) throws(DatabaseError) -> stat? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw DatabaseError(code: .connectionFailed, detail: "could not inspect \(path): \(String(cString: strerror(errno)))")
        }
        return info
    }

    private static func octal(_ mode: mode_t) -> String { "0" + String(mode & 0o7777, radix: 8) }
}
