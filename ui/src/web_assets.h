// Private to assay_ui: the files of ui/web/, embedded by embed_web.cmake.
#pragma once

#include <vector>

#include "assay/ui.h"

namespace assay::ui {

const std::vector<Asset>& embedded_assets();

}  // namespace assay::ui
