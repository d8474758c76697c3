// The shared temp-dir helper under the name the store and engine tests use.
#pragma once

#include "support/temp_dir.h"

using TempDir = assay::testing::TempDir;
