// Original file: proto/cri/runtime/v1/api.proto


export interface CDIDevice {
  /**
   * Fully qualified CDI name, vendor.com/class=device.
   */
  'name'?: (string);
}

export interface CDIDevice__Output {
  /**
   * Fully qualified CDI name, vendor.com/class=device.
   */
  'name': (string);
}
