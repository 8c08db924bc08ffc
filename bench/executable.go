package bench

import "os"

// osExecutable is os.Executable; a variable so tests never re-execute the test binary.
var osExecutable = os.Executable
