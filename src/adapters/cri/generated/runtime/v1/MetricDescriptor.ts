// Original file: proto/cri/runtime/v1/api.proto


export interface MetricDescriptor {
  /**
   * The key Metric.name refers to.
   */
  'name'?: (string);
  'help'?: (string);
  /**
   * Metric.label_values line up with these, in order.
   */
  'labelKeys'?: (string)[];
}

export interface MetricDescriptor__Output {
  /**
   * The key Metric.name refers to.
   */
  'name': (string);
  'help': (string);
  /**
   * Metric.label_values line up with these, in order.
   */
  'labelKeys': (string)[];
}
