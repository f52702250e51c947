// Runs every closure-body snippet of README.md and Documentation/ (generated into
// Generated/ by Scripts/doc-snippets), in page order; exits 1 if any fails or takes longer
// than 30 seconds. A snippet whose service is not configured is skipped, except under CI=true
// (or RESTARTIX_REQUIRE_SERVICES=1), where that fails too.
import Foundation

struct TimedOut: Error {}

let environment = ProcessInfo.processInfo.environment
let required = environment["CI"] == "true" || environment["RESTARTIX_REQUIRE_SERVICES"] == "1"
var failures = 0
func say(_ line: String) {
    print(line)
    fflush(nil)
}
for snippet in snippets {
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await snippet.run() }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                throw TimedOut()
            }
            try await group.next()
            group.cancelAll()
        }
        say("doc-snippets: ok \(snippet.where)")
    } catch let skipped as Skipped where !required {
        say("doc-snippets: skipped \(snippet.where): \(skipped.reason)")
    } catch {
        failures += 1
        FileHandle.standardError.write(Data("doc-snippets: FAILED \(snippet.where): \(error)\n".utf8))
    }
}
Harness.cleanUp()
if failures > 0 { exit(1) }
say("doc-snippets: \(snippets.count) snippets ran")
